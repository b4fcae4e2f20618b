/** The dashboard page served at / on the admin port; it polls /tenants. */
export const DASHBOARD_HTML = `<!doctype html><meta charset="utf-8"><title>pgtenant</title><h1>pgtenant</h1><table id="tenants"></table>`;
