# Multi-stage build of the manager and of a Linux lync-agent (the simulator, for demo clusters).
# Both are static (CGO_ENABLED=0) and run as a non-root user in a distroless image.
#   docker build -t poolpair-operator .                          the manager (the default: last stage)
#   docker build --target lync-agent -t poolpair-lync-agent .    the agent
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/manager . && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/lync-agent ./cmd/lync-agent

FROM gcr.io/distroless/static:nonroot AS lync-agent
COPY --from=build /out/lync-agent /lync-agent
USER 65532:65532
ENTRYPOINT ["/lync-agent"]

# Last, so that a plain `docker build` makes the image config/manager deploys.
FROM gcr.io/distroless/static:nonroot AS manager
COPY --from=build /out/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
