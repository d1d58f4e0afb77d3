import Foundation
import LocalRedis
import RedisClient

/// Certificates shared by every test of one test process: making RSA keys with the openssl
/// CLI takes seconds on a two-core machine, and no test changes them. Made once, awaited by
/// every caller (a lazy global would block callers' threads in its one-time initialiser).
private actor SharedCertificates {
    static let instance = SharedCertificates()
    private var making: Task<TestCertificates, any Error>?

    func get() async throws -> TestCertificates {
        if let making { return try await making.value }
        let task = Task { try await TestCertificates.make() }
        making = task
        return try await task.value
    }
}

extension TestCertificates {
    /// One set of certificates for the whole test run (see ``make(serverNames:)``).
    public static func shared() async throws -> TestCertificates { try await SharedCertificates.instance.get() }

    /// Server options serving TLS with this CA's server certificate.
    public func serverTLS(requireClientCertificates: Bool = false) -> LocalRedisServer.Options.TLS {
        .init(
            certificateFile: serverCertificateFile, keyFile: serverKeyFile, caFile: caFile,
            requireClientCertificates: requireClientCertificates)
    }
}

extension LocalRedisServer.Options {
    /// Options with a few fields set, for one-line server set-ups in tests.
    public static func with(_ tweak: (inout LocalRedisServer.Options) -> Void) -> LocalRedisServer.Options {
        var options = LocalRedisServer.Options()
        tweak(&options)
        return options
    }
}

extension RedisConnection {
    /// One field of `INFO section`, e.g. `blocked_clients` in `clients`.
    public func infoField(_ section: String, _ field: String) async throws -> String? {
        try await send(INFO(section: section))[field]
    }

    /// How many clients the server has blocked in BLPOP, XREADGROUP BLOCK and the like.
    public func blockedClients() async throws -> Int {
        Int(try await infoField("clients", "blocked_clients") ?? "") ?? -1
    }

    /// The `CLIENT LIST` lines, one dictionary of `key=value` fields per client.
    public func clientList() async throws -> [[String: String]] {
        let text = try await send(["CLIENT", "LIST"]).string ?? ""
        return text.split(separator: "\n").map { line in
            var fields: [String: String] = [:]
            for pair in line.split(separator: " ") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            }
            return fields
        }
    }
}
