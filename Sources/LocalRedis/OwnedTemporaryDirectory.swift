import Foundation

/// The temporary data directories of local redis-servers: each says which process made it (its
/// pid and pid namespace, in `owner`) and which redis-server runs in it (`server.pid`), so that
/// the directories of a process that could not remove them (SIGKILL, the OOM killer, a crash:
/// its redis-servers die with it, see ``SpawnThread``, but nothing removes their data) are
/// removed by the next one that makes a directory in the same place.
///
/// A directory is removed only when its owner and its server are both gone, in this pid
/// namespace (a /tmp shared with a container, whose pids mean other processes, is left alone),
/// and never one without an `owner` file (made by an older build, or by hand).
public enum OwnedTemporaryDirectory {
    public static let prefix = "ordershop-redis-"
    public static let ownerFile = "owner"
    public static let serverPIDFile = "server.pid"

    /// A new directory under `base`, owned by this process, after removing the stale ones there.
    public static func make(in base: String) throws -> String {
        removeStale(in: base)
        var template = Array("\(base)/\(prefix)XXXXXX".utf8CString)
        guard let result = mkdtemp(&template) else { throw LocalRedisError("mkdtemp failed in \(base): \(String(cString: strerror(errno)))") }
        let directory = String(cString: result)
        try "\(getpid()) \(pidNamespace ?? "-")\n".write(toFile: directory + "/" + ownerFile, atomically: true, encoding: .utf8)
        return directory
    }

    /// Records the pid of the redis-server that runs in `directory` (after each start).
    static func recordServer(_ pid: Int32, in directory: String) {
        try? "\(pid)\n".write(toFile: directory + "/" + serverPIDFile, atomically: true, encoding: .utf8)
    }

    /// Removes the directories under `base` whose owner and server are gone; returns their paths.
    @discardableResult
    public static func removeStale(in base: String) -> [String] {
        guard let namespace = pidNamespace, let names = try? FileManager.default.contentsOfDirectory(atPath: base) else { return [] }
        var removed: [String] = []
        for name in names where name.hasPrefix(prefix) {
            let directory = base + "/" + name
            guard let owner = try? String(contentsOfFile: directory + "/" + ownerFile, encoding: .utf8) else { continue }
            let fields = owner.split(whereSeparator: \.isWhitespace)
            guard fields.count == 2, let ownerPID = Int32(fields[0]), fields[1] == namespace, isGone(ownerPID) else { continue }
            if let server = try? String(contentsOfFile: directory + "/" + serverPIDFile, encoding: .utf8),
                let serverPID = Int32(server.trimmingCharacters(in: .whitespacesAndNewlines)), !isGone(serverPID)
            {
                continue
            }
            if (try? FileManager.default.removeItem(atPath: directory)) != nil { removed.append(directory) }
        }
        return removed
    }

    /// This process's pid namespace (`pid:[4026531836]`), nil where /proc does not say.
    public static var pidNamespace: String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid")
    }

    /// No process runs with this pid: none has it, or it is a zombie (dead, not yet reaped: a
    /// redis-server whose `up` was SIGKILLed is one until pid 1 reaps it).
    static func isGone(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        if kill(pid, 0) == -1 && errno == ESRCH { return true }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(after: close)...].split(separator: " ").first == "Z"
    }
}
