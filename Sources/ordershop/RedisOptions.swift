import ArgumentParser
import Foundation
import RedisClient

/// Redis connection options shared by every subcommand. Flags win over the environment
/// (`REDIS_URL`, `REDIS_TLS_CA_FILE`, `REDIS_TLS_CERT_FILE`, `REDIS_TLS_KEY_FILE`, `REDIS_TLS_SERVER_NAME`).
struct RedisOptions: ParsableArguments {
    @Option(name: .long, help: "Redis URL: redis://[user:password@]host[:port][/db], rediss://... for TLS, unix:///path.sock (default: $REDIS_URL, else redis://127.0.0.1:6379)")
    var url: String?

    @Option(name: .customLong("tls-ca-file"), help: "PEM CA file to verify the server (default: $REDIS_TLS_CA_FILE, else the system trust store)")
    var caFile: String?

    @Option(name: .customLong("tls-cert-file"), help: "PEM client certificate for mutual TLS (default: $REDIS_TLS_CERT_FILE)")
    var certFile: String?

    @Option(name: .customLong("tls-key-file"), help: "PEM client key for mutual TLS (default: $REDIS_TLS_KEY_FILE)")
    var keyFile: String?

    @Option(name: .customLong("tls-server-name"), help: "Name for SNI and the certificate check (default: $REDIS_TLS_SERVER_NAME, else the host)")
    var serverName: String?

    /// A bad `--url` or TLS flag is a usage error of the subcommand it was given to: refused
    /// with that subcommand's usage before it runs (thrown from `run`, the top-level usage came
    /// with it). The environment alone is checked when the configuration is made: `up` without
    /// `--url` never reads `REDIS_URL`.
    func validate() throws {
        if url != nil || caFile != nil || certFile != nil || keyFile != nil || serverName != nil { _ = try configuration() }
    }

    /// The configuration from flags over environment.
    func configuration() throws -> RedisConfiguration {
        var env = ProcessInfo.processInfo.environment
        // A TLS flag with a plain-text URL is refused naming the flag the user typed (the
        // environment's check below would name the variable it was copied into).
        let tlsFlags = [("--tls-ca-file", caFile), ("--tls-cert-file", certFile), ("--tls-key-file", keyFile), ("--tls-server-name", serverName)]
            .filter { $0.1 != nil }.map(\.0)
        if !tlsFlags.isEmpty, let plain = try? RedisConfiguration(url: url ?? env["REDIS_URL"] ?? "redis://127.0.0.1:6379"), !plain.tls.isEnabled {
            throw ValidationError("\(tlsFlags.joined(separator: ", ")) given but the Redis URL is not rediss://")
        }
        if let caFile { env["REDIS_TLS_CA_FILE"] = caFile }
        if let certFile { env["REDIS_TLS_CERT_FILE"] = certFile }
        if let keyFile { env["REDIS_TLS_KEY_FILE"] = keyFile }
        if let serverName { env["REDIS_TLS_SERVER_NAME"] = serverName }
        do {
            return try RedisConfiguration.fromEnvironment(env, url: url)
        } catch {
            throw ValidationError(error.message)
        }
    }
}
