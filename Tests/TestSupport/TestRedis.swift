import Foundation
import LocalRedis
import RedisClient

/// Starts a real redis-server for one test and stops it afterwards.
///
/// A missing redis-server fails the test loudly (with the install command); nothing skips.
public func withRedisServer<T>(
    _ options: LocalRedisServer.Options = .init(),
    _ body: (LocalRedisServer) async throws -> T
) async throws -> T {
    let server = try await startRedisServer(options)
    do {
        let result = try await body(server)
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}

/// Starts a redis-server. On a port picked for it (``LocalRedisServer/Options/port`` nil), a
/// start that fails because the port was taken meanwhile is retried on another port: a "free"
/// port is only free until another process (or any outgoing connection) binds it, and tests
/// run in parallel on a busy machine.
public func startRedisServer(_ options: LocalRedisServer.Options = .init()) async throws -> LocalRedisServer {
    var attempt = 1
    while true {
        do {
            return try await LocalRedisServer(options)
        } catch let error as LocalRedisError where options.port == nil && attempt < 5 && error.description.contains("Address already in use") {
            attempt += 1
        }
    }
}

extension LocalRedisServer {
    /// A pool connected to this server (TLS and password as the server was started with).
    public func makePool(maximumConnections: Int = 4, tweak: (inout RedisConfiguration) -> Void = { _ in }) throws -> RedisConnectionPool {
        var c = configuration
        tweak(&c)
        return try RedisConnectionPool(configuration: c, maximumConnections: maximumConnections)
    }

    /// A pool logged in as a user made now with these ACL rules (`ACL SETUSER name on >pw rules...`),
    /// through `admin`: what a process run as a narrower Redis user meets.
    public func makeUserPool(_ name: String, rules: [String], admin: RedisConnectionPool) async throws -> RedisConnectionPool {
        try await admin.send((["ACL", "SETUSER", name, "on", ">pw"] + rules).map { RedisArgument($0) })
        return try makePool { $0.authentication = .init(username: name, password: "pw") }
    }

    /// A single connection to this server.
    public func makeConnection(tweak: (inout RedisConfiguration) -> Void = { _ in }) throws -> RedisConnection {
        var c = configuration
        tweak(&c)
        return try RedisConnection(configuration: c)
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held. An error
/// thrown by the condition counts as "not yet" (the server may be restarting).
/// For waiting on other processes; tests assert on the outcome, never on the time it took.
/// 60 s by default: a wait of 30 s, met in about 1 s alone, ran out in loaded CI runs (a handler
/// failing 4 deliveries, 2026-12-06). A longer wait slows only a test that fails.
public func eventually(
    timeout: Duration = .seconds(60), every interval: Duration = .milliseconds(50),
    _ condition: () async throws -> Bool
) async -> Bool {
    let start = ContinuousClock.now
    while ContinuousClock.now - start < timeout {
        if (try? await condition()) == true { return true }
        // A cancelled test stops polling (and fails its expectation) instead of spinning.
        do { try await Task.sleep(for: interval) } catch { return false }
    }
    return (try? await condition()) == true
}

/// Starts a primary with `replicas` replicas (real redis-server processes, no cluster) for one
/// test and stops them afterwards.
public func withReplication<T>(
    replicas: Int = 1, _ body: (LocalRedisReplication) async throws -> T
) async throws -> T {
    let replication = try await LocalRedisReplication(replicas: replicas)
    do {
        let result = try await body(replication)
        await replication.shutdown()
        return result
    } catch {
        await replication.shutdown()
        throw error
    }
}
