import Foundation
import LocalRedis

/// A CA, a server certificate for `localhost`/127.0.0.1 and a client certificate, made at test
/// time with the openssl CLI in a temporary directory.
public struct TestCertificates: Sendable {
    public let directory: String
    public var caFile: String { directory + "/ca.crt" }
    public var caKeyFile: String { directory + "/ca.key" }
    public var serverCertificateFile: String { directory + "/server.crt" }
    public var serverKeyFile: String { directory + "/server.key" }
    public var clientCertificateFile: String { directory + "/client.crt" }
    public var clientKeyFile: String { directory + "/client.key" }
    /// A second, unrelated CA (for "wrong CA" tests).
    public var otherCAFile: String { directory + "/other-ca.crt" }
    /// A client certificate of the unrelated CA (one a server that trusts ``caFile`` refuses).
    public var otherClientCertificateFile: String { directory + "/other-client.crt" }
    public var otherClientKeyFile: String { directory + "/other-client.key" }

    /// Makes all files. `serverNames` go into the server certificate's subjectAltName.
    public static func make(serverNames: [String] = ["DNS:localhost", "IP:127.0.0.1"]) async throws -> TestCertificates {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ordershop-certs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let certs = TestCertificates(directory: dir)
        let san = serverNames.joined(separator: ",")
        try await openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=OrderShop Test CA",
                     "-keyout", certs.caKeyFile, "-out", certs.caFile], in: dir)
        try await openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Unrelated CA",
                     "-keyout", dir + "/other-ca.key", "-out", certs.otherCAFile], in: dir)
        try await issue(name: "server", subject: "/CN=localhost", extensions: "subjectAltName=\(san)\nextendedKeyUsage=serverAuth", certs: certs)
        try await issue(name: "client", subject: "/CN=ordershop-client", extensions: "extendedKeyUsage=clientAuth", certs: certs)
        try await issue(
            name: "other-client", subject: "/CN=ordershop-client", extensions: "extendedKeyUsage=clientAuth", certs: certs,
            ca: (dir + "/other-ca.crt", dir + "/other-ca.key"))
        return certs
    }

    private static func issue(
        name: String, subject: String, extensions: String, certs: TestCertificates, ca: (certificate: String, key: String)? = nil
    ) async throws {
        let dir = certs.directory
        let (caFile, caKeyFile) = ca ?? (certs.caFile, certs.caKeyFile)
        try extensions.write(toFile: "\(dir)/\(name).ext", atomically: true, encoding: .utf8)
        try await openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", "\(dir)/\(name).key", "-out", "\(dir)/\(name).csr"], in: dir)
        try await openssl(["x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", caFile, "-CAkey", caKeyFile, "-CAcreateserial",
                     "-days", "2", "-extfile", "\(dir)/\(name).ext", "-out", "\(dir)/\(name).crt"], in: dir)
    }

    /// Runs the openssl CLI as a ``ChildProcess``, waiting without blocking a thread: a blocking
    /// `Process.waitUntilExit()` here once held both cooperative threads of a 2-core machine
    /// (see ``ChildProcess``) and hung the whole test run.
    private static func openssl(_ arguments: [String], in directory: String) async throws {
        let log = directory + "/openssl-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let process = try ChildProcess("openssl", arguments, outputFile: log)
        guard let status = await process.waitForExit(timeout: .seconds(120)) else {
            await process.stop(signal: SIGKILL)
            throw TestSupportError("openssl \(arguments.joined(separator: " ")) did not finish within 120 s")
        }
        guard status == 0 else {
            throw TestSupportError("openssl \(arguments.joined(separator: " ")) failed (\(status)): \(process.output)")
        }
    }

    public func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
