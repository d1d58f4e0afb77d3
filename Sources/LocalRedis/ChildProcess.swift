import Foundation

/// A child process started with posix_spawn, with stdout and stderr going to a log file.
///
/// Exit is observed with `waitpid(WNOHANG)` polled from async code (never a blocking wait on
/// the concurrency pool). Used for redis-server, worker and service processes in `ordershop up`,
/// the chaos harness, benchmarks and tests.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public let executable: String
    public let arguments: [String]
    /// Where stdout and stderr go.
    public let outputFile: String
    private let lock = NSLock()
    private var exitStatus: Int32?

    /// Starts `executable` (an absolute path, or a name found on PATH).
    /// - Parameters:
    ///   - environment: variables added to (or replacing those of) this process's environment.
    ///   - outputFile: log file (appended to); a temporary file when nil.
    ///   - ownProcessGroup: start it in a process group of its own, so that a signal to this
    ///     process's group (Ctrl-C in a terminal, `timeout`) does not reach it: for a child this
    ///     process stops itself, after what depends on it.
    ///   - diesWithParent: the child is SIGKILLed when this process ends, however it ends
    ///     (``parentDeathLauncher``). Without it, `ordershop up` killed with SIGKILL (or by the
    ///     OOM killer, or a crash) left its redis-servers running, holding their ports and data
    ///     directories, and so did a test process that crashed. SIGKILL rather than SIGTERM: a
    ///     child stopped by a chaos pause acts on no other signal. A Redis killed so loses no
    ///     answered write: it writes its append-only file before it answers.
    public init(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:],
        outputFile: String? = nil, ownProcessGroup: Bool = false, diesWithParent: Bool = true
    ) throws {
        let path = try Self.resolve(executable)
        self.executable = path
        self.arguments = arguments
        self.outputFile = outputFile ?? (NSTemporaryDirectory() + "child-\(UUID().uuidString).log")

        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        // setpriv sets the signal and execs the program: the child keeps its pid.
        let launcher = diesWithParent ? Self.parentDeathLauncher : nil
        let spawned = launcher ?? path
        let argv = (launcher.map { [$0, "--pdeathsig", "KILL", "--"] } ?? []) + [path] + arguments
        let envp = env.map { "\($0.key)=\($0.value)" }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, self.outputFile, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        Self.closeInheritedDescriptors(&actions)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Reset signal handling in the child: our process may ignore SIGPIPE or block signals.
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK
        if ownProcessGroup {
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= POSIX_SPAWN_SETPGROUP
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        // From the one thread that lives as long as this process (``SpawnThread``): the death
        // signal follows the spawning thread, not the process.
        let (rc, pid) = SpawnThread.shared.run { () -> (Int32, pid_t) in
            var pid: pid_t = 0
            let rc = Self.withCStrings(argv) { cArgv in
                Self.withCStrings(envp) { cEnv in
                    posix_spawn(&pid, spawned, &actions, &attributes, cArgv, cEnv)
                }
            }
            return (rc, pid)
        }
        guard rc == 0 else { throw LocalRedisError("cannot start \(path): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    /// util-linux's `setpriv`, which sets a parent-death signal (`--pdeathsig`) and execs the
    /// program: a posix_spawn cannot set one itself. Nil where it is missing, or cannot set one
    /// (util-linux before 2.33, busybox: it would refuse the option and every child would die at
    /// once): then children outlive a killed parent, as before. Asked once, with /bin/true.
    ///
    /// A parent that dies between the spawn and setpriv's prctl (a millisecond) leaves the child
    /// without the signal: setpriv does not check its parent again.
    static let parentDeathLauncher: String? = {
        guard let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }),
            let truePath = ["/bin/true", "/usr/bin/true"].first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else { return nil }
        var pid: pid_t = 0
        let argv = [setpriv, "--pdeathsig", "KILL", "--", truePath]
        let rc = withCStrings(argv) { cArgv in withCStrings([]) { cEnv in posix_spawn(&pid, setpriv, nil, nil, cArgv, cEnv) } }
        guard rc == 0 else { return nil }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // Exited with 0: `status` is 0.
        return status == 0 ? setpriv : nil
    }()

    /// The exit status (or 128 + signal), or nil while it runs. Reaps the child once it exited.
    public var status: Int32? {
        lock.lock()
        defer { lock.unlock() }
        if let exitStatus { return exitStatus }
        var raw: Int32 = 0
        let r = waitpid(pid, &raw, WNOHANG)
        if r == pid {
            let signal = raw & 0x7f
            exitStatus = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
        } else if r < 0 {
            exitStatus = -1  // not our child any more (reaped elsewhere)
        }
        return exitStatus
    }

    public var isRunning: Bool { status == nil }

    /// Sends a signal (SIGKILL, SIGTERM, SIGSTOP, SIGCONT...).
    public func signal(_ signal: Int32) {
        if isRunning { kill(pid, signal) }
    }

    /// Waits for the exit (polling without blocking a thread); nil when still running after
    /// `timeout`, or when the waiting task is cancelled first.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(30)) async -> Int32? {
        let start = ContinuousClock.now
        while true {
            if let status { return status }
            if ContinuousClock.now - start > timeout { return nil }
            do {
                try await Task.sleep(for: .milliseconds(10))
            } catch {
                return status
            }
        }
    }

    /// Sends `signal` (after SIGCONT, so a stopped process can act on it), waits up to `grace`,
    /// then SIGKILLs. Returns the exit status.
    ///
    /// A stop is clean-up, so it runs to its end in a cancelled task too (a process stopped on
    /// its second Ctrl-C still stops its children): its waits are bounded by `grace` and by the
    /// few seconds a SIGKILLed process takes, not by cancellation.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, grace: Duration = .seconds(15)) async -> Int32 {
        if isRunning {
            kill(pid, SIGCONT)
            kill(pid, signal)
        }
        if let status = await waitForExitRegardlessOfCancellation(timeout: grace) { return status }
        kill(pid, SIGKILL)
        return await waitForExitRegardlessOfCancellation(timeout: .seconds(60)) ?? -1
    }

    private func waitForExitRegardlessOfCancellation(timeout: Duration) async -> Int32? {
        let start = ContinuousClock.now
        while true {
            if let status { return status }
            if ContinuousClock.now - start > timeout { return nil }
            await Self.pause(milliseconds: 10)
        }
    }

    /// A pause that cancellation does not cut short (`Task.sleep` returns at once in a cancelled
    /// task, and a poll loop around it would spin).
    private static func pause(milliseconds: Int) async {
        await withCheckedContinuation { (resume: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(milliseconds)) { resume.resume() }
        }
    }

    /// Everything the process printed so far.
    public var output: String { (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? "" }

    deinit {
        if status == nil {
            kill(pid, SIGKILL)
            var raw: Int32 = 0
            waitpid(pid, &raw, 0)  // reap: it was just SIGKILLed, so this returns at once
        }
    }

    /// The child gets stdin, stdout and stderr and nothing else. Any other descriptor without
    /// FD_CLOEXEC would stay open in it for as long as it lives: a redis-server spawned while
    /// Foundation's `Process` started openssl inherited the socket whose closing tells `Process`
    /// that openssl exited, so `waitUntilExit()` waited for that redis-server, blocking a
    /// cooperative thread; two such waits deadlocked a whole test run on 2 cores (CI timed out
    /// after 90 min with no test finished).
    private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        // glibc ≥ 2.34 has posix_spawn_file_actions_addclosefrom_np; Swift's Glibc module does
        // not export it, so it is looked up by name.
        typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            let addCloseFrom = unsafeBitCast(symbol, to: AddCloseFrom.self)
            if addCloseFrom(&actions, 3) == 0 { return }
        }
        // Older C libraries: close each descriptor open now (one opened after this listing and
        // before the spawn can still leak; glibc ignores closing one that is no longer open).
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for fd in open.compactMap({ Int32($0) }) where fd > 2 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
    }

    /// Finds an executable: a path as given, else the first match on PATH.
    public static func resolve(_ name: String) throws -> String {
        if name.contains("/") {
            guard FileManager.default.isExecutableFile(atPath: name) else { throw LocalRedisError("\(name) is not executable") }
            return name
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        for dir in ["/usr/local/bin", "/usr/bin", "/usr/sbin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        throw LocalRedisError("\(name) not found on PATH")
    }

    private static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        pointers.append(nil)
        defer { pointers.forEach { free($0) } }
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
