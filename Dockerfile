# syntax=docker/dockerfile:1
# cell0 image: one image for every role; the command picks it (start | api | worker | dashboard | simulator).
#   docker build -t cell0 .
#   docker run --rm -e REDIS_URL=redis://host:6379 cell0 worker
# See docker-compose.yml for a whole fleet (Redis, simulator, API, two workers, Bull Board).
ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: compile the TypeScript to dist/ ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the only dependency install scripts (@swc/core, esbuild, @parcel/watcher,
# msgpackr-extract) are not approved in package.json "allowScripts" anyway, and `prepare` (= the build)
# would run here before the sources are copied; the build runs explicitly below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY producers ./producers
COPY workers ./workers
COPY shared ./shared
COPY dashboards ./dashboards
RUN npm run build

# ---- runtime: production dependencies, compiled code and run-time assets only ----
FROM ${NODE_IMAGE} AS runtime
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Read at run time from the package root: the bundled search corpus. (The Lua scripts are in dist/: the
# build copies shared/lua there.)
COPY data ./data
# `cell0 start` keeps its embedded-Redis data in ./.cell0 (CELL0_DATA_DIR); let the node user write it.
RUN mkdir -p /app/.cell0 && chown node:node /app/.cell0
# In a container the services must listen on every interface to be reachable.
ENV CELL0_HOST=0.0.0.0 CELL0_SIM_HOST=0.0.0.0
USER node
# API, Bull Board (`cell0 dashboard`), Ollama-compatible simulator.
EXPOSE 3000 3001 11435
# No image-wide HEALTHCHECK: workers serve no HTTP. docker-compose.yml adds one per HTTP service.
# V8's young generation capped at 2 x 16 MB: left to itself it grows to 2 x 64 MB under steady load on a large
# host, RSS that is never given back; and held there, so that the idle scavenge between bursts of requests does
# not shrink it for the next burst (docs/resources.md, "Memory over time").
ENTRYPOINT ["node", "--max-semi-space-size=16", "--min-semi-space-size=16", "dist/bin/cell0.js"]
CMD ["start"]
