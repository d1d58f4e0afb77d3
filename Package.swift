// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "ordershop",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "RedisClient", targets: ["RedisClient"]),
        .library(name: "StreamWorker", targets: ["StreamWorker"]),
        .library(name: "WorkerMetricsHTTP", targets: ["WorkerMetricsHTTP"]),
        .library(name: "OrderShop", targets: ["OrderShop"]),
        .executable(name: "ordershop", targets: ["ordershop"]),
        .executable(name: "ordershop-chaos", targets: ["ordershop-chaos"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        // Tests only: the dashboard's browser test talks to headless Chromium over the DevTools
        // protocol, a WebSocket (WSClient builds on the NIO the project already has).
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.2"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // OTLP export over HTTP only: the default traits add OTLP/gRPC, which drags grpc-swift in.
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // hiredis: the RESP codec only (Debian's 0.14 has no TLS; the transport is ours).
        .systemLibrary(
            name: "CHiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        // OpenSSL for TLS, with a shim for the macros Swift cannot import.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "RedisClient",
            dependencies: [
                "CHiredis",
                "COpenSSL",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Starts and stops a local redis-server child process (ordershop up, tests, chaos, benchmarks).
        .target(
            name: "LocalRedis",
            dependencies: ["RedisClient"]
        ),
        // The worker runtime: consumer groups, idempotent settle, leases, reclaim, dead letters.
        .target(
            name: "StreamWorker",
            dependencies: [
                "RedisClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        // A worker process's `GET /metrics` (Prometheus) and `GET /healthz`, apart from the runtime
        // so that a user of StreamWorker alone does not link an HTTP server.
        .target(
            name: "WorkerMetricsHTTP",
            dependencies: [
                "RedisClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
            ]
        ),
        // The application: event store, read models, services, gateway, CRM and billing workers.
        .target(
            name: "OrderShop",
            dependencies: [
                "RedisClient",
                "StreamWorker",
                "WorkerMetricsHTTP",
                "LocalRedis",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ]
        ),
        .executableTarget(
            name: "ordershop",
            dependencies: [
                "RedisClient",
                "LocalRedis",
                "StreamWorker",
                "WorkerMetricsHTTP",
                "OrderShop",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // bench latency: its in-process worker traced with `withTracer`.
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        // The network faults of the chaos harness (resets, stalls, latency, a withheld reply),
        // also used by runtime tests; plain sockets, no other dependency.
        .target(
            name: "FaultProxy",
            path: "chaos/Sources/FaultProxy"
        ),
        // The chaos harness (see chaos/README.md).
        .target(
            name: "ChaosHarness",
            dependencies: [
                "FaultProxy",
                "RedisClient",
                "LocalRedis",
                "OrderShop",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            path: "chaos/Sources/ChaosHarness"
        ),
        .executableTarget(
            name: "ordershop-chaos",
            dependencies: [
                "ChaosHarness",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "chaos/Sources/ordershop-chaos"
        ),
        // Shared by the test targets: redis-server processes, child processes, certificates.
        .target(
            name: "TestSupport",
            dependencies: ["RedisClient", "LocalRedis"],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "RedisClientTests",
            // FaultProxy: the endpoint that moves to a promoted replica (ReplicaFailoverTests).
            dependencies: ["RedisClient", "LocalRedis", "TestSupport", "FaultProxy"]
        ),
        .testTarget(
            name: "StreamWorkerTests",
            dependencies: [
                "StreamWorker", "WorkerMetricsHTTP", "RedisClient", "LocalRedis", "TestSupport",
                // Its TCPProxy: a reply lost after Redis ran the request (LostSettleReplyTests).
                "FaultProxy",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                // EventTracingTests: spans recorded in memory, and OTel's own W3C propagation.
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ]
        ),
        // The chaos checker and verdict on synthetic histories (no processes, no Redis), and the
        // cluster network's partition on a real local cluster.
        .testTarget(
            name: "ChaosHarnessTests",
            dependencies: ["ChaosHarness", "OrderShop", "RedisClient", "LocalRedis", "TestSupport"]
        ),
        .testTarget(
            name: "OrderShopTests",
            dependencies: [
                "OrderShop", "StreamWorker", "RedisClient", "LocalRedis", "TestSupport", "FaultProxy",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "WSClient", package: "swift-websocket"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
