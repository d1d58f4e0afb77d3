import Foundation
import Synchronization
import RedisClient

/// A `redis-server` child process on loopback, for `ordershop up`, tests, chaos runs and
/// benchmarks. It is started on a free port (or the one given), and stopped by pid.
///
/// A missing `redis-server` is an error that says how to install it; nothing here skips.
public final class LocalRedisServer: @unchecked Sendable {
    /// How the server is started.
    public struct Options: Sendable {
        /// TCP port; nil picks a free one.
        public var port: Int?
        /// Also listen on a unix socket in the data directory.
        public var unixSocket: Bool = false
        /// Append-only file on, and its fsync policy (`always`, `everysec`, `no`).
        public var appendOnly: Bool = false
        public var appendFsync: String = "everysec"
        /// Data directory; nil makes a temporary one (removed on ``stop()`` unless kept).
        public var directory: String?
        /// TLS: serve TLS on the port (and no plain text).
        public var tls: TLS?
        /// `requirepass` for the default user.
        public var password: String?
        /// An ACL file to load (`aclfile`).
        public var aclFile: String?
        /// Bind address.
        public var bind: String = "127.0.0.1"
        /// Further `--name value` arguments.
        public var extraArguments: [String] = []
        /// In a process group of its own (``ChildProcess``): Ctrl-C on the process that started
        /// it does not stop it; that process does, when what uses it has stopped (`ordershop up`).
        public var ownProcessGroup = false

        public struct TLS: Sendable {
            public var certificateFile: String
            public var keyFile: String
            public var caFile: String
            /// Require client certificates (mutual TLS).
            public var requireClientCertificates: Bool

            public init(certificateFile: String, keyFile: String, caFile: String, requireClientCertificates: Bool = false) {
                self.certificateFile = certificateFile
                self.keyFile = keyFile
                self.caFile = caFile
                self.requireClientCertificates = requireClientCertificates
            }
        }

        public init() {}
    }

    public let options: Options
    public private(set) var port: Int
    public let directory: String
    private let ownsDirectory: Bool
    private var process: ChildProcess?

    /// The path of the unix socket, when ``Options/unixSocket`` is on.
    public var unixSocketPath: String { directory + "/redis.sock" }
    /// The server's log file.
    public var logFile: String { directory + "/redis.log" }
    /// The pid of the running server, or nil.
    public var pid: Int32? { process?.isRunning == true ? process?.pid : nil }

    /// A `redis://` (or `rediss://`) URL for the server, without credentials.
    public var url: String { (options.tls == nil ? "redis://" : "rediss://") + "127.0.0.1:\(port)" }

    /// A client configuration for the server (TLS verification against the given CA).
    public var configuration: RedisConfiguration {
        var c = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: port))
        if let tls = options.tls { c.tls = .enable(.init(caFile: tls.caFile, serverName: "localhost")) }
        if let password = options.password { c.authentication = .init(password: password) }
        return c
    }

    /// Starts the server and waits until it answers.
    public init(_ options: Options = Options()) async throws {
        self.options = options
        port = try options.port ?? Self.freePort()
        if var dir = options.directory {
            // redis-server changes into --dir before it opens --logfile: both must be absolute.
            if !dir.hasPrefix("/") { dir = FileManager.default.currentDirectoryPath + "/" + dir }
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            // Perhaps a temporary directory once (its data taken back after a crash): no
            // longer one the next process may remove as stale.
            OwnedTemporaryDirectory.disown(dir)
            directory = dir
            ownsDirectory = false
        } else {
            directory = try Self.makeTemporaryDirectory()
            ownsDirectory = true
        }
        do {
            try await start()
        } catch {
            // Failed or cancelled while starting: leave no server and no temporary directory.
            await shutdown()
            throw error
        }
    }

    /// Path of the `redis-server` binary, or an error saying how to install it.
    public static func executable() throws -> String {
        let candidates = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
            .split(separator: ":").map { "\($0)/redis-server" } + ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) { return found }
        throw LocalRedisError("redis-server not found on PATH; install it with: apt-get install -y redis-server")
    }

    /// Starts (or restarts, after ``kill()`` or ``stop()``) the server on the same port and directory.
    public func start() async throws {
        if pid != nil { return }
        let logOffset = (try? FileManager.default.attributesOfItem(atPath: logFile)[.size] as? Int) ?? 0
        let process = try ChildProcess(
            try Self.executable(), arguments(), outputFile: directory + "/redis-server.out", ownProcessGroup: options.ownProcessGroup)
        self.process = process
        if ownsDirectory { OwnedTemporaryDirectory.recordServer(process.pid, in: directory) }
        try await waitUntilReady(logOffset: logOffset)
    }

    private func arguments() -> [String] {
        var a = ["--bind", options.bind, "--dir", directory, "--logfile", logFile, "--save", "", "--daemonize", "no",
                 "--protected-mode", "no"]
        if let tls = options.tls {
            a += ["--port", "0", "--tls-port", String(port), "--tls-cert-file", tls.certificateFile, "--tls-key-file", tls.keyFile,
                  "--tls-ca-cert-file", tls.caFile, "--tls-auth-clients", tls.requireClientCertificates ? "yes" : "no"]
        } else {
            a += ["--port", String(port)]
        }
        if options.unixSocket { a += ["--unixsocket", unixSocketPath, "--unixsocketperm", "700"] }
        if options.appendOnly { a += ["--appendonly", "yes", "--appendfsync", options.appendFsync] }
        if let password = options.password { a += ["--requirepass", password] }
        if let aclFile = options.aclFile { a += ["--aclfile", aclFile] }
        return a + options.extraArguments
    }

    /// Waits until the server accepts connections (a TCP connect or the socket file), or fails
    /// with the tail of its log when it exits or does not come up.
    private func waitUntilReady(logOffset: Int) async throws {
        let started = ContinuousClock.now
        while ContinuousClock.now - started < .seconds(20) {
            guard let p = process, p.isRunning else {
                throw LocalRedisError("redis-server exited at start: \(logTail())")
            }
            // Only this run's part of the log counts: a restart appends to the same file, and
            // after loading an append-only file Redis logs "Ready" once the data is in memory.
            let log = (try? Data(contentsOf: URL(fileURLWithPath: logFile))) ?? Data()
            if log.count > logOffset, String(decoding: log[logOffset...], as: UTF8.self).contains("Ready to accept connections") {
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw LocalRedisError("redis-server did not become ready within 20 s: \(logTail())")
    }

    /// The last lines of the server's log.
    public func logTail(lines: Int = 5) -> String {
        let text = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: " | ")
    }

    /// Kills the server with SIGKILL (a crash: no shutdown, no final fsync) and waits for it to exit.
    public func kill() async {
        await signalAndWait(SIGKILL)
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    public func stop() async {
        await signalAndWait(SIGTERM)
    }

    /// Sends SIGSTOP or SIGCONT, to freeze the server without closing its sockets.
    public func signal(_ signal: Int32) {
        if let pid { Foundation.kill(pid, signal) }
    }

    private func signalAndWait(_ signal: Int32) async {
        guard let p = process else { return }
        await p.stop(signal: signal)
        process = nil
    }

    /// Stops the server and removes its temporary directory.
    public func shutdown() async {
        await stop()
        if ownsDirectory { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// A TCP port that was free a moment ago on 127.0.0.1.
    public static func freePort() throws -> Int {
        // Never the same port twice in a process: several are often taken before any is bound.
        for _ in 0..<64 {
            let (fd, port) = try bindLoopbackSocket()
            close(fd)
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
        throw LocalRedisError("no free port found")
    }

    private static let handedOut = Mutex<Set<Int>>([])

    /// The first of `count` consecutive free ports below the kernel's ephemeral range (for
    /// `ordershop up --cluster --redis-port`), none of which ``freePort()`` hands out after.
    public static func freePortRange(count: Int) throws -> Int {
        let assigned = try assignedPortRange()
        let bottom = assigned?.lowerBound ?? 10_000
        let top = (assigned.map { $0.upperBound + 1 } ?? min(ephemeralPortRange().lowerBound, 65536)) - count
        guard top >= bottom else { throw LocalRedisError("no room for \(count) consecutive ports in \(bottom)..<\(top + count)") }
        for _ in 0..<64 {
            let base = Int.random(in: bottom...top)
            var bound: [Int32] = []
            defer { for fd in bound { close(fd) } }
            for port in base..<(base + count) {
                guard let socket = try bindLoopback(port: port) else { break }
                bound.append(socket.fileDescriptor)
            }
            guard bound.count == count else { continue }
            let ports = Set(base..<(base + count))
            if handedOut.withLock({ taken in
                guard taken.isDisjoint(with: ports) else { return false }
                taken.formUnion(ports)
                return true
            }) { return base }
        }
        throw LocalRedisError("no \(count) consecutive free ports found")
    }

    /// A TCP socket bound (not listening) to a free port of 127.0.0.1, and that port: nothing
    /// else can take the port while the socket is open, and a connect to it is refused.
    ///
    /// The port is taken below the kernel's ephemeral range when there is room there: a port
    /// from that range (what binding port 0 gives) can be handed, between our close and the
    /// server's bind, to the local end of any outgoing connection of this machine (a worker's
    /// many Redis connections, say), and the server then fails with "address already in use".
    ///
    /// With ``portRangeVariable`` set (`FROM-TO`), every port comes from that range, never from
    /// the kernel: two processes that each take ports (the planted-bug chaos runs side by side)
    /// are given disjoint ranges, so that neither can take a port the other has chosen and not
    /// yet bound.
    public static func bindLoopbackSocket() throws -> (fileDescriptor: Int32, port: Int) {
        if let range = try assignedPortRange() {
            for _ in 0..<256 {
                if let bound = try bindLoopback(port: Int.random(in: range)) { return bound }
            }
            throw LocalRedisError("no free port found in \(portRangeVariable)=\(range.lowerBound)-\(range.upperBound)")
        }
        let ephemeralLow = ephemeralPortRange().lowerBound
        if ephemeralLow > 11_000 {
            for _ in 0..<64 {
                if let bound = try bindLoopback(port: Int.random(in: 10_000..<ephemeralLow)) { return bound }
            }
        }
        guard let bound = try bindLoopback(port: 0) else { throw LocalRedisError("bind() failed") }
        return bound
    }

    /// The environment variable that confines the ports this process takes to `FROM-TO`.
    public static let portRangeVariable = "LOCAL_REDIS_PORT_RANGE"

    /// The range ``portRangeVariable`` assigns, nil when it is unset or empty; an error naming it
    /// when it is not `FROM-TO` with 1024 <= FROM <= TO <= 65535.
    public static func assignedPortRange(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ClosedRange<Int>? {
        guard let text = environment[portRangeVariable], !text.isEmpty else { return nil }
        let bounds = text.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
        guard bounds.count == 2, let from = bounds[0], let to = bounds[1], 1024 <= from, from <= to, to <= 65535 else {
            throw LocalRedisError("\(portRangeVariable)='\(text)' is not FROM-TO, two ports with 1024 <= FROM <= TO <= 65535")
        }
        return from...to
    }

    /// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), else Linux's default.
    static func ephemeralPortRange() -> ClosedRange<Int> {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let bounds = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        guard bounds.count == 2, bounds[0] <= bounds[1] else { return 32768...60999 }
        return bounds[0]...bounds[1]
    }

    /// A socket bound to `port` of 127.0.0.1 (0: any free one), or nil when that port is taken.
    private static func bindLoopback(port: Int) throws -> (fileDescriptor: Int32, port: Int)? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LocalRedisError("socket() failed") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            close(fd)
            return nil
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    static func makeTemporaryDirectory() throws -> String {
        try OwnedTemporaryDirectory.make(in: ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp")
    }
}

/// A failure to start or reach the local redis-server.
public struct LocalRedisError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
