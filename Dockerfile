# The manager's image, for those with a Docker engine: `make docker-build`.
#
# `make image` builds the same image without Docker and without pulling a base image (the
# daemonless path, hack/release): the static binaries alone in one layer (/manager and
# /dingtalk-token-proxy, which a sidecar runs), user 65532:65532, entrypoint /manager, as OCI
# tarballs for linux/amd64 and linux/arm64. Keep the two equivalent.

# Build the manager and dingtalk-token-proxy binaries.
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
# Stamped into --version, as `make image` and `make release` do.
ARG VERSION=v0.0.0-dev
ARG COMMIT=

WORKDIR /workspace
# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download

COPY cmd/main.go cmd/main.go
COPY cmd/dingtalk-token-proxy/ cmd/dingtalk-token-proxy/
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/

# Static binaries (no cgo) for the distroless base image, with Mozilla's CA roots compiled in
# (golang.org/x/crypto/x509roots/fallback). GOARCH is left to the builder's platform unless
# buildx sets TARGETARCH.
RUN export CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} && \
    LDFLAGS="-s -w -X github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version.Version=${VERSION} -X github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version.Commit=${COMMIT}" && \
    go build -trimpath -ldflags="${LDFLAGS}" -o manager ./cmd && \
    go build -trimpath -ldflags="${LDFLAGS}" -o dingtalk-token-proxy ./cmd/dingtalk-token-proxy

# The runtime image: no shell, no package manager, a non-root user.
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /workspace/manager /manager
COPY --from=builder /workspace/dingtalk-token-proxy /dingtalk-token-proxy
USER 65532:65532

ENTRYPOINT ["/manager"]
