# pgtenant in a container. Point config/pgtenant.yaml (or PGTENANT_CONFIG) at real backends;
# the embedded demo backend needs a non-root user, which this image runs as.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
RUN chown -R node:node /app
USER node
EXPOSE 6432 9930
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["start", "--config", "config/pgtenant.yaml"]
