import ArgumentParser
import Foundation
import RedisClient

/// `ordershop ping`: connect with the full configuration, authenticate, PING, and report.
struct PingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ping",
        abstract: "Connect to Redis (TLS, AUTH), PING it, and print the server version, TLS details and round-trip time (every node of a Redis Cluster)."
    )

    @OptionGroup var redis: RedisOptions

    func run() async throws {
        var config = try redis.configuration()
        config.reconnect.retryWindow = .zero  // one attempt: report the failure, do not wait it out
        do {
            if try await usesRedisCluster(config) {
                return try await ClusterPing.run(config)
            }
            let connection = try RedisConnection(configuration: config)
            try await connection.connect()
            let started = ContinuousClock.now
            let pong = try await connection.send(PING())
            let rtt = ContinuousClock.now - started
            let info = try await connection.send(INFO(section: "server"))
            let tls = await connection.tlsDetails
            print("endpoint: \(config.redactedDescription)")
            print("reply:    \(pong)")
            print("server:   redis \(info["redis_version"] ?? "unknown") (\(info["redis_mode"] ?? "standalone"))")
            // A URL that still names a demoted primary answers PONG like any other (a trial):
            // `status` said it was a replica, ping did not.
            let replication = try await connection.send(INFO(section: "replication"))
            print("role:     \(Self.role(replication))")
            if let tls {
                print("tls:      \(tls.protocolVersion), cipher \(tls.cipher)")
                if case .enable(let settings) = config.tls, !settings.verifyPeer {
                    // Encrypted, but to whom: anyone on the path could have answered this PING.
                    FileHandle.standardError.write(Data(
                        "warning: the server's certificate was NOT verified (ssl_cert_reqs=none): the connection is encrypted but not authenticated\n".utf8))
                }
            } else {
                print("tls:      off")
            }
            print(String(format: "rtt:      %.3f ms", Double(rtt.components.attoseconds) / 1e15 + Double(rtt.components.seconds) * 1e3))
            await connection.close()
        } catch let error as RedisError {
            throw CleanExit.message("ping failed: \(PingCommand.reason(error))", exitCode: 1)
        }
    }

    /// The server's role from `INFO replication`: a primary with its replicas, or a replica with
    /// its primary and link (whether it refuses writes, `replica-read-only`, INFO does not say).
    static func role(_ replication: [String: String]) -> String {
        switch replication["role"] {
        case "master":
            "primary, \(replication["connected_slaves"] ?? "0") replicas connected"
        case "slave":
            "replica of \(replication["master_host"] ?? "?"):\(replication["master_port"] ?? "?") (link \(replication["master_link_status"] ?? "unknown")): not the primary"
        case let other:
            other ?? "unknown"
        }
    }

    /// One line, and never a password: messages are built from codes and OpenSSL's reasons only.
    static func reason(_ error: RedisError) -> String {
        switch error.code {
        case .connectionRefused: "refused: \(error.message)"
        case .connectTimeout, .timeout: "timeout: \(error.message)"
        case .wrongPassword, .noAuth: "auth failed: \(error.message)"
        case .tlsVerifyFailed: error.message  // "TLS verify failed: <OpenSSL's reason>"
        case .tlsHostnameMismatch: "hostname mismatch: \(error.message)"
        default: error.description
        }
    }
}

/// A clean, one-line failure with an exit code (no usage text).
struct CleanExit: Error, CustomStringConvertible {
    let description: String
    let exitCode: Int32
    static func message(_ text: String, exitCode: Int32) -> CleanExit { CleanExit(description: text, exitCode: exitCode) }
}
