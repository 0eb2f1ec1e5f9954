# syntax=docker/dockerfile:1
# kennel's container image: `docker build -t kennel .` (docs/OPERATIONS.md, "Containers").
#
# Two stages: the build stage has the toolchain the native addons may need (argon2 and
# better-sqlite3 use a prebuilt binary when one matches, and compile with node-gyp otherwise),
# compiles the TypeScript to dist/ and drops the development dependencies; the runtime stage
# holds only dist/, the production node_modules and package.json, owned by root and read-only to
# the numeric non-root user kennel runs as. Nothing in the image is written at run time: the
# root file system can be mounted read-only, with KENNEL_DATA_DIR on a volume and /tmp a tmpfs.

ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# install scripts: only the two native addons run theirs (package.json allowScripts, which npm
# before 11 does not read); the sources are not here yet, so `prepare` must not run either
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm rebuild argon2 better-sqlite3
COPY . .
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    KENNEL_DATA_DIR=/var/lib/kennel \
    KENNEL_HOST=0.0.0.0
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# a named account without a login shell (so that `ps` and the CLI's actor have a name), and the
# data directory, the only place kennel writes (R8: 0700, its own user); a named volume mounted
# there starts with this owner and mode
RUN groupadd --system --gid 10001 kennel \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin kennel \
 && mkdir -p /var/lib/kennel && chown 10001:10001 /var/lib/kennel && chmod 0700 /var/lib/kennel
VOLUME ["/var/lib/kennel"]
USER 10001:10001
# MQTT over mutual TLS, HTTPS API, and the operations listener (/metrics, /healthz, /readyz),
# which binds to loopback unless KENNEL_METRICS_HOST says otherwise (R11): set it to 0.0.0.0 only
# where the container's network is private to the scraper and the orchestrator
EXPOSE 8883 8443 9464
# readiness on the operations listener, asked from inside the container (loopback works whatever
# KENNEL_METRICS_HOST is); the image has no curl, so node asks
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "const h=process.env.KENNEL_METRICS_HOST||'127.0.0.1';const host=h==='0.0.0.0'?'127.0.0.1':['::','[::]','::0'].includes(h)?'::1':h.replace(/^\\[|\\]$/g,'');require('node:http').get({host,port:Number(process.env.KENNEL_METRICS_PORT||9464),path:'/readyz',timeout:4000},(r)=>process.exit(r.statusCode===200?0:1)).on('timeout',()=>process.exit(1)).on('error',()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/bin/kennel.js"]
CMD ["start"]
