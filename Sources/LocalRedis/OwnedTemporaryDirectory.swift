import Foundation

/// The temporary data directories of local redis-servers: each says which process made it (its
/// pid, pid namespace and boot, in `owner`) and which redis-server runs in it (`server.pid`), so
/// that the directories of a process that could not remove them (SIGKILL, the OOM killer, a
/// crash: its redis-servers die with it, see ``SpawnThread``, but nothing removes their data) are
/// removed by the next one that makes a directory in the same place.
///
/// A directory is removed only when all of this holds: it is a real directory (not a symlink)
/// of this user, closed to others (mkdtemp's 0700); its `owner` is a small regular file of this
/// user naming this pid namespace and this boot (a /tmp shared with a container, or a $TMPDIR on
/// a filesystem other hosts share, is left alone); the owner's pid and the server's are gone. A
/// directory without an `owner` file (an older build's, one made by hand, or one taken over as a
/// `--data-dir`: see ``disown(_:)``) is never touched. Removal starts with a rename to a name of
/// this process's own, so that two processes never remove the same directory.
public enum OwnedTemporaryDirectory {
    public static let prefix = "ordershop-redis-"
    public static let ownerFile = "owner"
    public static let serverPIDFile = "server.pid"
    /// A directory being removed (renamed first): `.ordershop-redis-removing-<pid>-<name>`.
    static let removingPrefix = ".ordershop-redis-removing-"

    /// A new directory under `base`, owned by this process, after removing the stale ones there.
    public static func make(in base: String) throws -> String {
        removeStale(in: base)
        var template = Array("\(base)/\(prefix)XXXXXX".utf8CString)
        guard let result = mkdtemp(&template) else { throw LocalRedisError("mkdtemp failed in \(base): \(String(cString: strerror(errno)))") }
        let directory = String(cString: result)
        do {
            try "\(getpid()) \(pidNamespace ?? "-") \(bootID ?? "-")\n".write(toFile: directory + "/" + ownerFile, atomically: true, encoding: .utf8)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw LocalRedisError("cannot write \(directory)/\(ownerFile): \(error)")
        }
        return directory
    }

    /// Records the pid of the redis-server that runs in `directory` (after each start). If that
    /// cannot be written, the directory stops being removable (its `owner` goes): a server that
    /// outlived its owner could otherwise lose its data.
    static func recordServer(_ pid: Int32, in directory: String) {
        do {
            try "\(pid)\n".write(toFile: directory + "/" + serverPIDFile, atomically: true, encoding: .utf8)
        } catch {
            disown(directory)
        }
    }

    /// Makes `directory` one that is never removed: a `--data-dir` that was once a temporary
    /// directory (its data taken back after a crash) must not be removed under its new server.
    /// Only a directory named as ours is changed: any other `--data-dir` may hold files of its
    /// own called `owner` or `server.pid`.
    public static func disown(_ directory: String) {
        guard directory.split(separator: "/").last?.hasPrefix(prefix) == true else { return }
        unlink(directory + "/" + ownerFile)
        unlink(directory + "/" + serverPIDFile)
    }

    /// Removes the directories under `base` whose owner and server are gone; returns their paths.
    @discardableResult
    public static func removeStale(in base: String) -> [String] {
        guard let namespace = pidNamespace, let boot = bootID, let names = try? FileManager.default.contentsOfDirectory(atPath: base) else {
            return []
        }
        var removed: [String] = []
        for name in names {
            let directory = base + "/" + name
            if name.hasPrefix(removingPrefix) {
                // Left half-removed by a process that died while removing it.
                let pid = name.dropFirst(removingPrefix.count).split(separator: "-").first.flatMap { Int32($0) }
                if let pid, isGone(pid), isPrivateDirectory(directory) { try? FileManager.default.removeItem(atPath: directory) }
                continue
            }
            guard name.hasPrefix(prefix), isPrivateDirectory(directory), let owner = readSmallFile(directory + "/" + ownerFile) else { continue }
            let fields = owner.split(whereSeparator: \.isWhitespace)
            guard fields.count == 3, let ownerPID = Int32(fields[0]), fields[1] == namespace, fields[2] == boot, isGone(ownerPID) else { continue }
            if let server = readSmallFile(directory + "/" + serverPIDFile) {
                guard let serverPID = Int32(server.trimmingCharacters(in: .whitespacesAndNewlines)), isGone(serverPID) else { continue }
            }
            // Only the process whose rename succeeds removes it.
            let removing = base + "/" + removingPrefix + "\(getpid())-" + name
            guard rename(directory, removing) == 0 else { continue }
            try? FileManager.default.removeItem(atPath: removing)
            removed.append(directory)
        }
        return removed
    }

    /// This process's pid namespace (`pid:[4026531836]`), nil where /proc does not say.
    public static var pidNamespace: String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid")
    }

    /// This boot of the kernel: pids of another boot (or of another host sharing the
    /// filesystem, whose main pid namespace has the same name) mean nothing here.
    public static var bootID: String? {
        readSmallFile("/proc/sys/kernel/random/boot_id", requireOwner: false)?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// No process runs with this pid: none has it, or it is a zombie (dead, not yet reaped: a
    /// redis-server whose `up` was SIGKILLed is one until pid 1 reaps it).
    static func isGone(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        if kill(pid, 0) == -1 && errno == ESRCH { return true }
        guard let stat = readSmallFile("/proc/\(pid)/stat", requireOwner: false, limit: 1024), let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(after: close)...].split(separator: " ").first == "Z"
    }

    /// A real directory (not a symlink) of this user that no one else may enter, as mkdtemp
    /// makes them: another user's look-alike in /tmp is not ours to remove.
    static func isPrivateDirectory(_ path: String) -> Bool {
        var s = stat()
        guard lstat(path, &s) == 0 else { return false }
        return s.st_mode & S_IFMT == S_IFDIR && s.st_uid == geteuid() && s.st_mode & 0o077 == 0
    }

    /// The text of a regular file of at most `limit` bytes, opened without following a
    /// symlink and without blocking (a FIFO or a device planted there reads as nothing); of this
    /// user unless `requireOwner` is false.
    static func readSmallFile(_ path: String, requireOwner: Bool = true, limit: Int = 256) -> String? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var s = stat()
        guard fstat(fd, &s) == 0, s.st_mode & S_IFMT == S_IFREG, !requireOwner || s.st_uid == geteuid() else { return nil }
        var buffer = [UInt8](repeating: 0, count: limit)
        let count = read(fd, &buffer, limit)
        guard count >= 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }
}
