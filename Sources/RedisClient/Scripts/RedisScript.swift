import COpenSSL

/// A Lua script run with EVALSHA. When the server does not have it cached (NOSCRIPT, e.g.
/// after a restart), it is loaded with SCRIPT LOAD and the EVALSHA is sent again (up to
/// ``loadsPerCall`` times): an EVALSHA answered NOSCRIPT did not run, so re-sending it is safe.
public struct RedisScript: Sendable, Hashable {
    public let source: String
    /// The SHA-1 of the source, in hex, as Redis names cached scripts.
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        var digest = [UInt8](repeating: 0, count: Int(SHA_DIGEST_LENGTH))
        let bytes = Array(source.utf8)
        _ = bytes.withUnsafeBufferPointer { SHA1($0.baseAddress, $0.count, &digest) }
        self.sha1 = digest.map { b in
            let hex = Array("0123456789abcdef".utf8)
            return String(decoding: [hex[Int(b >> 4)], hex[Int(b & 0xF)]], as: UTF8.self)
        }.joined()
    }

    /// How many times one call loads its script when the server answers NOSCRIPT. More than
    /// once: after a failover the call can meet a server without the script twice (a demoted
    /// primary answers NOSCRIPT before READONLY, takes the SCRIPT LOAD, then refuses the call
    /// with READONLY; the call goes again to the promoted replica, which never loaded the
    /// script: scripts replicate as their effects). A replicated chaos run (seed 1801) dead-
    /// lettered a settle so when one load was all a call had.
    public static let loadsPerCall = 3

    /// The EVALSHA arguments for this script.
    public func evalSHAArguments(keys: [RedisArgument], arguments: [RedisArgument]) -> [RedisArgument] {
        ["EVALSHA", RedisArgument(sha1), RedisArgument(keys.count)] + keys + arguments
    }
}

extension RedisScript {
    /// Runs `call` (an EVALSHA of this script); while the server answers NOSCRIPT (the call did
    /// not run), runs `load` (its SCRIPT LOAD, where the call goes) and calls again, up to
    /// ``loadsPerCall`` times.
    func calling<T>(_ call: () async throws -> T, loadingWith load: () async throws -> Void) async throws -> T {
        var loads = 0
        while true {
            do {
                return try await call()
            } catch let error as RedisError where error.code == .noScript && loads < Self.loadsPerCall {
                loads += 1
                try await load()
            }
        }
    }
}

extension RedisConnection {
    /// Runs the script by EVALSHA, loading it first if the server answers NOSCRIPT.
    @discardableResult
    public func evaluate(_ script: RedisScript, keys: [RedisArgument] = [], arguments: [RedisArgument] = []) async throws -> RESPValue {
        let call = EVALSHA(script, keys: keys, arguments: arguments)
        return try await script.calling({ try await send(call) }, loadingWith: { _ = try await send(SCRIPTLOAD(script)) })
    }
}
