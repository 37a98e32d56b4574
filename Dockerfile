# Build stage: install every dependency and compile.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY gen ./gen
COPY src ./src
RUN npm run build

# Runtime stage: production dependencies and the compiled code only.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    ENGRAM_HOST=0.0.0.0 \
    ENGRAM_PORT=9000 \
    ENGRAM_METRICS_PORT=9001 \
    ENGRAM_DATA_DIR=/var/lib/engram
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
RUN mkdir -p /var/lib/engram && chown node:node /var/lib/engram
USER node
VOLUME /var/lib/engram
# 9000: gRPC, gRPC-Web and Connect. 9001: /metrics, /healthz, /readyz.
EXPOSE 9000 9001
STOPSIGNAL SIGTERM
# Engram checks itself over gRPC health; the image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "dist/src/cli/main.js", "health", "--url", "http://127.0.0.1:9000"]
CMD ["node", "dist/src/cli/main.js", "serve"]
