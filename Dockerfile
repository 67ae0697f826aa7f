# syntax=docker/dockerfile:1
# signalrd container image. Untested here (no Docker engine on the build machine): see
# docs/deploy/README.md for what is and is not tested. Build with `make image` or
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t signalrd .

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/signalrd ./cmd/signalrd

# distroless/static carries ca-certificates (upstream webhooks over https) and a nonroot user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/signalrd /signalrd
USER 65532:65532
# Listen on every interface inside the container. Set through the environment, not ENTRYPOINT
# flags, so `docker run … signalrd --log-level debug` or Kubernetes `args:` add flags without
# losing these (a flag still overrides them; note they also override a --config file's keys).
# Off loopback the built-in development key is refused: give SIGNALRD_ACCESS_KEY (or
# --access-key), or pass --allow-dev-key for a throwaway local container.
ENV SIGNALRD_LISTEN=0.0.0.0:8888 \
    SIGNALRD_ADMIN_LISTEN=0.0.0.0:9090
# 8888: clients, app servers, REST API, /api/health. 9090: admin (/metrics, /healthz, /readyz).
EXPOSE 8888 9090
ENTRYPOINT ["/signalrd", "serve"]
