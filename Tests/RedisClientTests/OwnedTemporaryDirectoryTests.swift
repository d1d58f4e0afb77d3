import Foundation
import LocalRedis
import Testing

/// The data directories a SIGKILLed process leaves are removed by the next one, and only those.
@Suite(.timeLimit(.minutes(1))) struct OwnedTemporaryDirectoryTests {
    @Test("a directory whose owner and server are gone is removed; one with a live owner or server, of another pid namespace or boot, or without an owner file is kept")
    func removesOnlyStaleDirectories() async throws {
        try await withBase { base, this in
            let dead = try await deadPID(), deadServer = try await deadPID()
            let me = getpid()
            let stale = try directory(in: base, "stale", owner: "\(dead) \(this)", server: deadServer)
            let staleWithoutServer = try directory(in: base, "nosrv", owner: "\(dead) \(this)")
            let liveOwner = try directory(in: base, "live", owner: "\(me) \(this)", server: deadServer)
            let liveServer = try directory(in: base, "server", owner: "\(dead) \(this)", server: me)
            let otherNamespace = try directory(in: base, "ns", owner: "\(dead) pid:[1] \(try #require(OwnedTemporaryDirectory.bootID))")
            let otherBoot = try directory(in: base, "boot", owner: "\(dead) \(try #require(OwnedTemporaryDirectory.pidNamespace)) other-boot")
            let noOwner = try directory(in: base, "old", owner: nil)
            let garbled = try directory(in: base, "garbled", owner: "not a pid")
            let disowned = try directory(in: base, "datadir", owner: "\(dead) \(this)", server: deadServer)
            OwnedTemporaryDirectory.disown(disowned)
            // Any other --data-dir keeps its files, whatever their names.
            let someDataDir = base + "/mine"
            try FileManager.default.createDirectory(atPath: someDataDir, withIntermediateDirectories: false)
            try "the owner's name".write(toFile: someDataDir + "/" + OwnedTemporaryDirectory.ownerFile, atomically: true, encoding: .utf8)
            OwnedTemporaryDirectory.disown(someDataDir)
            #expect(FileManager.default.fileExists(atPath: someDataDir + "/" + OwnedTemporaryDirectory.ownerFile))

            let removed = OwnedTemporaryDirectory.removeStale(in: base)
            #expect(Set(removed) == [stale, staleWithoutServer])
            for path in [stale, staleWithoutServer] { #expect(!FileManager.default.fileExists(atPath: path), "\(path)") }
            for path in [liveOwner, liveServer, otherNamespace, otherBoot, noOwner, garbled, disowned] {
                #expect(FileManager.default.fileExists(atPath: path + "/appendonly.aof"), "\(path)")
            }
            // Nothing left under another name either.
            #expect(try FileManager.default.contentsOfDirectory(atPath: base).filter { $0.hasPrefix(".") }.isEmpty)
        }
    }

    // The process often runs as root, in a /tmp anyone may write to.
    @Test("a look-alike that is a symlink, or a directory others may enter, is not removed, nor what it points to")
    func leavesLookAlikesAlone() async throws {
        try await withBase { base, this in
            let dead = try await deadPID()
            let target = try directory(in: base + "/elsewhere", "target", owner: "\(dead) \(this)")
            try FileManager.default.createSymbolicLink(atPath: base + "/" + OwnedTemporaryDirectory.prefix + "link", withDestinationPath: target)
            let open = try directory(in: base, "open", owner: "\(dead) \(this)")
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: open)
            let ownerLink = try directory(in: base, "ownerlink", owner: nil)
            try FileManager.default.createSymbolicLink(atPath: ownerLink + "/" + OwnedTemporaryDirectory.ownerFile, withDestinationPath: target + "/owner")

            #expect(OwnedTemporaryDirectory.removeStale(in: base).isEmpty)
            for path in [target, open, ownerLink] { #expect(FileManager.default.fileExists(atPath: path + "/appendonly.aof"), "\(path)") }
        }
    }

    @Test("a directory left half-removed by a process that died removing it is removed")
    func finishesAnInterruptedRemoval() async throws {
        try await withBase { base, this in
            let dead = try await deadPID()
            let half = try directory(in: base, "x", owner: "\(dead) \(this)")
            let renamed = base + "/.ordershop-redis-removing-\(dead)-" + OwnedTemporaryDirectory.prefix + "x"
            try FileManager.default.moveItem(atPath: half, toPath: renamed)
            let ours = base + "/.ordershop-redis-removing-\(getpid())-" + OwnedTemporaryDirectory.prefix + "y"
            try FileManager.default.createDirectory(atPath: ours, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            OwnedTemporaryDirectory.removeStale(in: base)
            #expect(!FileManager.default.fileExists(atPath: renamed))
            // One a live process is removing is its own business.
            #expect(FileManager.default.fileExists(atPath: ours))
        }
    }

    @Test("a new directory says which process owns it, and making one removes a stale one beside it")
    func makeRecordsItsOwner() async throws {
        try await withBase { base, this in
            let stale = try directory(in: base, "stale", owner: "\(try await deadPID()) \(this)")
            let made = try OwnedTemporaryDirectory.make(in: base)
            let owner = try String(contentsOfFile: made + "/" + OwnedTemporaryDirectory.ownerFile, encoding: .utf8)
            #expect(owner == "\(getpid()) \(this)\n")
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

    /// A private directory named like an owned one, with an `owner` file holding `owner` (none
    /// if nil), a `server.pid` with `server`, and some data.
    func directory(in base: String, _ name: String, owner: String?, server: Int32? = nil) throws -> String {
        let path = base + "/" + OwnedTemporaryDirectory.prefix + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if let owner { try (owner + "\n").write(toFile: path + "/" + OwnedTemporaryDirectory.ownerFile, atomically: true, encoding: .utf8) }
        if let server { try "\(server)\n".write(toFile: path + "/" + OwnedTemporaryDirectory.serverPIDFile, atomically: true, encoding: .utf8) }
        try "data".write(toFile: path + "/appendonly.aof", atomically: true, encoding: .utf8)
        return path
    }

    /// Runs `body` with a directory of its own to make directories in, and "<pid namespace> <boot id>"
    /// as an owner file of this process's namespace and boot ends.
    func withBase(_ body: (String, String) async throws -> Void) async throws {
        let base = NSTemporaryDirectory() + "owned-dirs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        let this = "\(try #require(OwnedTemporaryDirectory.pidNamespace)) \(try #require(OwnedTemporaryDirectory.bootID))"
        try await body(base, this)
    }
}
