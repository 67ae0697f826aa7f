# syntax=docker/dockerfile:1
# The chat sample (cmd/signalrd-chat) for docs/deploy/compose.yaml. Untested here (no Docker
# engine): see docs/deploy/README.md. Build context: the repository root.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/signalrd-chat ./cmd/signalrd-chat

# The page serves the official @microsoft/signalr browser bundles, pinned by e2e/js/package-lock.json.
FROM node:22-slim AS bundles
WORKDIR /js
COPY e2e/js/package.json e2e/js/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/signalrd-chat /signalrd-chat
COPY --from=bundles /js/node_modules/@microsoft /node_modules/@microsoft
USER 65532:65532
EXPOSE 5000
ENTRYPOINT ["/signalrd-chat", "--listen", "0.0.0.0:5000", "--bundles", "/node_modules"]
