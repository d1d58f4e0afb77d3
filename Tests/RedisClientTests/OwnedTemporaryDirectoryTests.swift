import Foundation
import LocalRedis
import Testing

/// The data directories a SIGKILLed process leaves are removed by the next one, and only those.
@Suite(.timeLimit(.minutes(1))) struct OwnedTemporaryDirectoryTests {
    @Test("a directory whose owner and server are gone is removed; one with a live owner or server, another pid namespace or no owner file is kept")
    func removesOnlyStaleDirectories() async throws {
        try await withBase { base, namespace in
            let dead = try await deadPID(), deadServer = try await deadPID()
            let me = getpid()
            let stale = try directory(in: base, "stale", owner: "\(dead) \(namespace)\n", server: deadServer)
            let staleWithoutServer = try directory(in: base, "nosrv", owner: "\(dead) \(namespace)\n")
            let liveOwner = try directory(in: base, "live", owner: "\(me) \(namespace)\n", server: deadServer)
            let liveServer = try directory(in: base, "server", owner: "\(dead) \(namespace)\n", server: me)
            let otherNamespace = try directory(in: base, "ns", owner: "\(dead) pid:[1]\n", server: deadServer)
            let noOwner = try directory(in: base, "old", owner: nil)
            let garbled = try directory(in: base, "garbled", owner: "not a pid\n")

            let removed = OwnedTemporaryDirectory.removeStale(in: base)
            #expect(Set(removed) == [stale, staleWithoutServer])
            for path in [stale, staleWithoutServer] { #expect(!FileManager.default.fileExists(atPath: path), "\(path)") }
            for path in [liveOwner, liveServer, otherNamespace, noOwner, garbled] { #expect(FileManager.default.fileExists(atPath: path), "\(path)") }
        }
    }

    @Test("a new directory says which process owns it, and making one removes a stale one beside it")
    func makeRecordsItsOwner() async throws {
        try await withBase { base, namespace in
            let stale = try directory(in: base, "stale", owner: "\(try await deadPID()) \(namespace)\n")
            let made = try OwnedTemporaryDirectory.make(in: base)
            let owner = try String(contentsOfFile: made + "/" + OwnedTemporaryDirectory.ownerFile, encoding: .utf8)
            #expect(owner == "\(getpid()) \(namespace)\n")
            #expect(!FileManager.default.fileExists(atPath: stale))
            // Ours, and we run: the next one keeps it.
            _ = try OwnedTemporaryDirectory.make(in: base)
            #expect(FileManager.default.fileExists(atPath: made))
        }
    }

    /// A pid no process has any more: a child that has exited and been reaped.
    func deadPID() async throws -> Int32 {
        let child = try ChildProcess("true", [])
        #expect(await child.waitForExit(timeout: .seconds(10)) == 0)
        return child.pid
    }

    /// A directory named like an owned one, with an `owner` file holding `owner` (none if nil),
    /// a `server.pid` with `server`, and some data.
    func directory(in base: String, _ name: String, owner: String?, server: Int32? = nil) throws -> String {
        let path = base + "/" + OwnedTemporaryDirectory.prefix + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        if let owner { try owner.write(toFile: path + "/" + OwnedTemporaryDirectory.ownerFile, atomically: true, encoding: .utf8) }
        if let server { try "\(server)\n".write(toFile: path + "/" + OwnedTemporaryDirectory.serverPIDFile, atomically: true, encoding: .utf8) }
        try "data".write(toFile: path + "/appendonly.aof", atomically: true, encoding: .utf8)
        return path
    }

    /// Runs `body` with a directory of its own to make directories in, and this pid namespace.
    func withBase(_ body: (String, String) async throws -> Void) async throws {
        let base = NSTemporaryDirectory() + "owned-dirs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        try await body(base, try #require(OwnedTemporaryDirectory.pidNamespace))
    }
}
