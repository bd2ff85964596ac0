# One image for every role; ROLE picks api, worker or all. It runs JavaScript compiled from the
# TypeScript sources in a build stage: no TypeScript loader and no dev dependencies at run time.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# dist/: the compiled program, with the Lua scripts and the dashboard's files beside it.
RUN npm run build

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    PORT=4000 \
    PRIVATE_REDIS=off
WORKDIR /app

# Dependencies first: this layer is rebuilt only when the lockfile changes.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY --from=build /app/dist ./dist

USER node
EXPOSE 4000
# Ready, not just alive: Redis reachable, scripts loaded, the fire loop turning (see src/health.ts).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 4000) + '/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# main.js handles SIGTERM: a worker finishes and commits its batch before it exits.
STOPSIGNAL SIGTERM
CMD ["node", "--enable-source-maps", "dist/main.js"]
