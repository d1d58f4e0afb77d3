import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization
import WorkerMetricsHTTP

/// A worker's metrics endpoint while the process waits for Redis, before it has a client to
/// build its worker and its real endpoint (``WorkerHTTPServer``) with: `/livez` answers 200,
/// `/healthz` 503 ("waiting for Redis"), `/metrics` what there is, with `stream_worker_redis_up 0`.
/// The dashboard's port answers the same way meanwhile (``dashboardRouter()``): it listened only
/// once Redis answered, and a taken port was not said at all while it waited (a trial).
///
/// Why: the port listened only once Redis answered, so a worker started while Redis was away
/// (a Kubernetes rollout beside a Redis loading its data, a managed Redis in maintenance) failed
/// its liveness probe on a closed port and was restarted every ~70 s (`deploy/k8s`: 10 s delay,
/// 6 failures 10 s apart), then held in CrashLoopBackOff for up to 5 minutes after Redis came
/// back; the manifests' comment said a Redis outage never restarts workers.
public enum WaitingEndpoint {
    private enum Phase { case grace, serving, ended }
    private final class PhaseBox: Sendable {
        let state = Mutex(Phase.grace)
    }

    /// How long the wait may take before the endpoint listens: a Redis that answers at once
    /// starts no second server on the port (and logs no second "listening").
    public static let grace: Duration = .seconds(1)

    /// A worker's metrics routes with Redis down.
    public static func workerRouter(service: String) -> Router<BasicRequestContext> {
        let redisUp = RedisUpGauge()
        redisUp.markDown()
        return WorkerHTTPServer.buildRouter(
            redisProblem: { "waiting for Redis: the worker starts once it answers" }, service: service, redisUp: redisUp)
    }

    /// The dashboard's: `/livez` 200, `/healthz` and every other path 503, saying it waits.
    public static func dashboardRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        let waiting = "waiting for Redis: the dashboard starts once it answers"
        router.get("/livez") { _, _ in Health.liveResponse(service: "dashboard") }
        router.get("/healthz") { _, _ in JSONResponse.encode(["status": waiting, "service": "dashboard"], status: .serviceUnavailable) }
        for path in ["/", "/**"] {
            router.get(RouterPath(path)) { _, _ in JSONResponse.encode(["error": waiting], status: .serviceUnavailable) }
        }
        return router
    }

    /// Runs `body` (the wait for Redis); if it takes longer than ``grace``, serves `router` at
    /// `host:port` until it ends, and returns once the port is closed again (the real endpoint
    /// binds it next). A port that cannot be bound ends the wait with that error. Port 0 serves
    /// nothing: a worker's `--metrics-port 0` opens no port, and the dashboard's (any free port)
    /// would be another port than the real one's.
    public static func serving<T: Sendable>(
        _ kind: Listener = .metrics, port: Int, host: String, router: Router<BasicRequestContext>, logger: Logger,
        limits: HTTPServerLimits = .monitoring, while body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        guard port != 0 else { return try await body() }
        // A port it cannot bind ends the wait as the real endpoint's would (``ListenFailure``).
        let listener = HTTPListener(kind, host: host, port: port) { onRunning in
            Application(
                router: router, server: .http1KeepingConnectionRules(limits: limits),
                configuration: limits.applicationConfiguration(address: .hostname(host, port: port)),
                onServerRunning: { await onRunning($0.localAddress?.port ?? port) }, logger: logger)
        }
        // Stopped by a graceful shutdown, not by cancellation (which Hummingbird logs as an
        // error); only its grace period is cancelled.
        // At most 2 s: a client that pipelines requests and never reads the answers would hold
        // Hummingbird's quiesce, and a signal before the start with it (a review).
        var configuration = ServiceGroupConfiguration(services: [listener], logger: logger)
        configuration.maximumGracefulShutdownDuration = .seconds(2)
        let server = ServiceGroup(configuration: configuration)
        let phase = PhaseBox()
        // The wait's outcome comes as a value, so that only the endpoint's own failure (a port it
        // cannot bind) throws from the group.
        return try await withThrowingTaskGroup(of: Result<T, any Error>?.self) { group in
            group.addTask {
                // Built before the return, not returned from inside the do/catch (the shape of
                // a Swift 6.3.1 -O miscompile: scripts/taskgroup-tuple-repro.swift).
                let outcome: Result<T, any Error>
                do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
                return outcome
            }
            group.addTask {
                do { try await Task.sleep(for: grace) } catch { return nil }
                let serves = phase.state.withLock { current in
                    guard current == .grace else { return false }
                    current = .serving
                    return true
                }
                // Out of the wait's cancellation (a signal before the start ends the wait so):
                // the wait's end stops it gracefully below; cancelled, Hummingbird logged two
                // errors ("Waiting on child channel: CancellationError()", "Already closed").
                if serves { try await Task { try await server.run() }.value }
                return nil
            }
            // The wait's end (a client, or a failure such as a refused password) ends the
            // endpoint, and this returns once its port is closed (the real endpoint binds it next).
            while let outcome = try await group.next() {
                guard let outcome else { continue }
                let serving = phase.state.withLock { current in
                    defer { current = .ended }
                    return current == .serving
                }
                if serving { await server.triggerGracefulShutdown() } else { group.cancelAll() }
                try? await group.waitForAll()
                return try outcome.get()
            }
            throw CancellationError()
        }
    }
}
