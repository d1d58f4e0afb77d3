import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy between the workers and Redis, run on its own thread (plain POSIX
/// sockets and poll(2), so nothing blocks the Swift concurrency pool). It injects network faults:
/// connection resets (RST on both sides), stalls (nothing forwarded, connections held open),
/// added latency (every chunk held back before it is forwarded) and a request whose reply is
/// held back (``holdReply(afterSending:)``), and a network partition between chosen clients and
/// the server (``partition(from:)``), told apart by their source address.
public final class TCPProxy: Sendable {
    public let port: Int
    private let listener: Int32

    private struct Control {
        /// Where new connections go (``retarget(toPort:)``).
        var targetPort: Int
        var stalledUntil: ContinuousClock.Instant?
        var latency: Duration = .zero
        var latencyUntil: ContinuousClock.Instant?
        var resetRequested = false
        /// The bytes that make the next connection sending them be held (``holdReply(afterSending:)``).
        var holdPattern: [UInt8]?
        /// Clients on the other side of a partition (``partition(from:)``).
        var partitioned: ClientSources?
        /// The clients resets, stalls and latency act on (``limitFaults(to:)``); nil: all.
        var faultSources: ClientSources?
        var repliesWithheld = 0
        var stopped = false
        var accepted = 0
        var resets = 0
        /// Connections aborted by resets, over all of them.
        var connectionsReset = 0
        /// Connections open at the proxy thread's last round.
        var open = 0
        /// Of those, connections cut off by the partition.
        var cutOff = 0
    }

    private let control: Mutex<Control>

    /// Listens on a free loopback port and forwards to `127.0.0.1:targetPort`.
    public init(targetPort: Int) throws {
        control = Mutex(Control(targetPort: targetPort))
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TCPProxyError("proxy: socket() failed") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            close(fd)
            throw TCPProxyError("proxy: bind/listen failed")
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        listener = fd
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let thread = Thread { [self] in self.loop() }
        thread.name = "chaos-proxy"
        thread.start()
    }

    /// Sends new connections to `127.0.0.1:port` from now on; open ones stay where they are.
    /// This is a managed service's failover as its clients see it: the endpoint's DNS name
    /// moves to the promoted replica, while connections made before keep talking to the old node.
    public func retarget(toPort port: Int) {
        control.withLock { $0.targetPort = port }
    }

    /// Resets every open connection (the clients see ECONNRESET). Returns how many connections
    /// the proxy thread aborted, once it has (nil when it did not act within a second).
    public func resetConnections() async -> Int? {
        let before = control.withLock { c -> (Int, Int) in
            c.resetRequested = true
            return (c.resets, c.connectionsReset)
        }
        for _ in 0..<100 {
            let now = control.withLock { ($0.resets, $0.connectionsReset) }
            if now.0 > before.0 { return now.1 - before.1 }
            do { try await Task.sleep(for: .milliseconds(10)) } catch { return nil }
        }
        return nil
    }

    /// Forwards nothing for `duration`; connections stay open, data waits.
    public func stall(for duration: Duration) {
        control.withLock { $0.stalledUntil = .now + duration }
    }

    /// Holds every chunk back `latency` before forwarding it, for `duration`.
    public func addLatency(_ latency: Duration, for duration: Duration) {
        control.withLock {
            $0.latency = latency
            $0.latencyUntil = .now + duration
        }
    }

    /// One shot: the first connection that sends `pattern` upstream (from then on) is held. The
    /// data it sent up to and including the chunk that carries the pattern is forwarded, so Redis
    /// runs that request; then nothing more is relayed on that connection, either way: the reply
    /// waits unread in the proxy until ``resetConnections()`` aborts the connection, and the
    /// client never sees it. That is a reply lost after the server acted: a test waits for
    /// ``repliesWithheld``, then resets the connection or kills the client. Other connections,
    /// and those opened later, are forwarded as usual. A pattern split across two reads is found.
    public func holdReply(afterSending pattern: [UInt8]) {
        precondition(!pattern.isEmpty)
        control.withLock { $0.holdPattern = pattern }
    }

    /// Held connections whose server has answered since (so it ran the request, for a client
    /// that waits for each reply before it sends the next request, as a pooled connection does).
    public var repliesWithheld: Int { control.withLock { $0.repliesWithheld } }

    /// Some clients, by the address their connections come from: those a partition cuts off
    /// (``partition(from:)``), or those the other faults act on (``limitFaults(to:)``).
    public enum ClientSources: Sendable, Equatable {
        /// Every client.
        case all
        /// Clients at these IPv4 addresses (a Redis node's `bind-source-addr`, or 127.0.0.1).
        case addresses(Set<String>)

        func contains(_ source: in_addr_t) -> Bool {
            switch self {
            case .all: true
            case .addresses(let set): set.contains { inet_addr($0) == source }
            }
        }
    }

    /// A network partition between `sources` and the server, until ``endPartition()``: their
    /// connections, open or opened meanwhile, relay nothing either way, and they stay open
    /// (nothing is reset or lost: what was sent waits, as TCP retransmits it once a partition
    /// heals). Other clients are relayed as usual: the partition is between these peers only.
    public func partition(from sources: ClientSources) {
        control.withLock { $0.partitioned = sources }
    }

    /// Ends ``partition(from:)``: what waited goes through.
    public func endPartition() {
        control.withLock { $0.partitioned = nil }
    }

    /// Connections cut off by the partition now (as of the proxy thread's last round).
    public var partitionedConnections: Int { control.withLock { $0.cutOff } }

    /// From now on, resets, stalls and latency act only on connections from `sources`
    /// (connections accepted before keep what they had); partitions are unaffected. A cluster
    /// node's client proxy limits them to the clients, so that a replica's link (from its node's
    /// own address) is left alone: a reset would abort a link a partition is holding, and a
    /// stall would make a coordinated failover overlapping it time out.
    public func limitFaults(to sources: ClientSources) {
        control.withLock { $0.faultSources = sources }
    }

    /// Ends every fault at once.
    public func heal() {
        control.withLock {
            $0.stalledUntil = nil
            $0.latency = .zero
            $0.latencyUntil = nil
        }
    }

    public func stop() { control.withLock { $0.stopped = true } }

    /// Connections open now that the faults act on (as of the proxy thread's last round): a stall or latency with none
    /// would affect nothing.
    public var openConnections: Int { control.withLock { $0.open } }

    /// Connections accepted and resets done so far.
    public var counts: (accepted: Int, resets: Int) { control.withLock { ($0.accepted, $0.resets) } }

    // MARK: The proxy thread

    private final class Pipe {
        let client: Int32
        let server: Int32
        /// The client's IPv4 address (network order), for ``partition(from:)``.
        let source: in_addr_t
        /// Resets, stalls and latency act on it (``limitFaults(to:)``).
        let faulted: Bool
        /// Chunks waiting to be written, with the moment each may go.
        var toServer: [(due: ContinuousClock.Instant, bytes: [UInt8])] = []
        var toClient: [(due: ContinuousClock.Instant, bytes: [UInt8])] = []
        var closed = false
        /// Caught by the hold pattern: its request was forwarded, nothing more is relayed.
        var held = false
        /// Held, and the server has answered (left unread).
        var answered = false
        /// The last bytes read from the client, for a pattern split across reads.
        var recent: [UInt8] = []
        init(client: Int32, server: Int32, source: in_addr_t, faulted: Bool) {
            self.client = client
            self.server = server
            self.source = source
            self.faulted = faulted
        }
    }

    private func loop() {
        var pipes: [Pipe] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let now = ContinuousClock.now
            let open = pipes.filter(\.faulted).count
            let partitioned = control.withLock { $0.partitioned }
            let cutOff = partitioned.map { sources in pipes.filter { sources.contains($0.source) }.count } ?? 0
            let (stalled, latency, reset, stopped, holdPattern) = control.withLock { c -> (Bool, Duration, Bool, Bool, [UInt8]?) in
                c.open = open
                c.cutOff = cutOff
                if let until = c.stalledUntil, until <= now { c.stalledUntil = nil }
                if let until = c.latencyUntil, until <= now {
                    c.latencyUntil = nil
                    c.latency = .zero
                }
                let r = c.resetRequested
                c.resetRequested = false
                if r { c.resets += 1 }
                return (c.stalledUntil != nil, c.latency, r, c.stopped, c.holdPattern)
            }
            if stopped {
                for p in pipes { abort(p) }
                pipes = []
            } else if reset {
                // Those a partition holds stay held: a real partition resets nothing.
                let hit = pipes.filter { $0.faulted && partitioned?.contains($0.source) != true }
                control.withLock { $0.connectionsReset += hit.count }
                for p in hit { abort(p) }
                pipes.removeAll { p in hit.contains { $0 === p } }
            }
            if stopped {
                close(listener)
                return
            }
            // The pipes polled this round (a connection accepted below waits for the next one).
            // Those cut off by a partition are not polled either: their data waits, as a stall's.
            // A stall holds the connections its faults act on (all, unless limited).
            let polled = pipes.filter { !(stalled && $0.faulted) && partitioned?.contains($0.source) != true }
            var fds: [pollfd] = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            // While stalled, the connections are not polled at all (a hung-up peer would make
            // poll return at once, over and over); the data waits in the kernel's buffers.
            for p in polled {
                var ce: Int16 = 0
                var se: Int16 = 0
                if p.held {
                    // Only what it sent before it was caught goes on; a hung-up client (below) ends it.
                    if let first = p.toServer.first, first.due <= now { se |= Int16(POLLOUT) }
                    if !p.answered { se |= Int16(POLLIN) }
                } else {
                    if p.toServer.count < 64 { ce |= Int16(POLLIN) }
                    if p.toClient.count < 64 { se |= Int16(POLLIN) }
                    if let first = p.toClient.first, first.due <= now { ce |= Int16(POLLOUT) }
                    if let first = p.toServer.first, first.due <= now { se |= Int16(POLLOUT) }
                }
                fds.append(pollfd(fd: p.client, events: ce, revents: 0))
                fds.append(pollfd(fd: p.server, events: se, revents: 0))
            }
            _ = poll(&fds, nfds_t(fds.count), 10)
            if fds[0].revents & Int16(POLLIN) != 0 { acceptOne(into: &pipes) }
            let at = ContinuousClock.now
            for (i, p) in polled.enumerated() {
                let c = fds[1 + 2 * i]
                let s = fds[2 + 2 * i]
                let bad = Int16(POLLERR | POLLHUP | POLLNVAL)
                if p.held {
                    if (c.revents | s.revents) & bad != 0 { p.closed = true }
                    if !p.closed, !p.answered, s.revents & Int16(POLLIN) != 0 {
                        p.answered = true
                        control.withLock { $0.repliesWithheld += 1 }
                    }
                    if !p.closed, s.revents & Int16(POLLOUT) != 0, !write(p.server, from: &p.toServer, now: at) { p.closed = true }
                } else {
                    if c.revents & Int16(POLLIN) != 0 || (c.revents & bad != 0) {
                        let queued = p.toServer.count
                        if !read(p.client, into: &p.toServer, buffer: &buffer, due: at + (p.faulted ? latency : .zero)) { p.closed = true }
                        if let pattern = holdPattern, p.toServer.count > queued { holdIfSent(pattern, by: p) }
                    }
                    if s.revents & Int16(POLLIN) != 0 || (s.revents & bad != 0) {
                        if !read(p.server, into: &p.toClient, buffer: &buffer, due: at + (p.faulted ? latency : .zero)) { p.closed = true }
                    }
                    if !p.closed, c.revents & Int16(POLLOUT) != 0, !write(p.client, from: &p.toClient, now: at) { p.closed = true }
                    if !p.closed, s.revents & Int16(POLLOUT) != 0, !write(p.server, from: &p.toServer, now: at) { p.closed = true }
                }
            }
            pipes.removeAll { p in
                if p.closed {
                    close(p.client)
                    close(p.server)
                }
                return p.closed
            }
        }
    }

    /// Holds `p` when the chunk just read from its client, with the tail of the one before,
    /// contains `pattern` (and no other connection was caught by it first).
    private func holdIfSent(_ pattern: [UInt8], by p: Pipe) {
        guard let last = p.toServer.last?.bytes else { return }
        let window = p.recent + last
        p.recent = Array(window.suffix(pattern.count - 1))
        guard window.count >= pattern.count,
            (0...(window.count - pattern.count)).contains(where: { window[$0..<$0 + pattern.count].elementsEqual(pattern) })
        else { return }
        p.held = control.withLock { c in
            guard c.holdPattern == pattern else { return false }
            c.holdPattern = nil
            return true
        }
    }

    private func acceptOne(into pipes: inout [Pipe]) {
        var peer = sockaddr_in()
        var peerLength = socklen_t(MemoryLayout<sockaddr_in>.size)
        let client = withUnsafeMutablePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listener, $0, &peerLength) }
        }
        guard client >= 0 else { return }
        let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = Self.loopback(port: control.withLock { $0.targetPort })
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard server >= 0, connected == 0 else {
            // Redis is down: the client sees its connection closed, as it would without a proxy.
            if server >= 0 { close(server) }
            close(client)
            return
        }
        for fd in [client, server] {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        control.withLock { $0.accepted += 1 }
        let faulted = control.withLock { $0.faultSources?.contains(peer.sin_addr.s_addr) ?? true }
        pipes.append(Pipe(client: client, server: server, source: peer.sin_addr.s_addr, faulted: faulted))
    }

    /// Reads what is there; false when the peer closed or failed.
    private func read(_ fd: Int32, into queue: inout [(due: ContinuousClock.Instant, bytes: [UInt8])], buffer: inout [UInt8], due: ContinuousClock.Instant) -> Bool {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 {
            queue.append((due, Array(buffer[0..<n])))
            return true
        }
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return true }
        return false
    }

    /// Writes the chunks that are due; false on a failed write.
    private func write(_ fd: Int32, from queue: inout [(due: ContinuousClock.Instant, bytes: [UInt8])], now: ContinuousClock.Instant) -> Bool {
        while let first = queue.first, first.due <= now {
            let n = first.bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
            }
            if n < first.bytes.count {
                queue[0].bytes.removeFirst(n)
                return true
            }
            queue.removeFirst()
        }
        return true
    }

    /// Closes both sides with RST (SO_LINGER zero).
    private func abort(_ p: Pipe) {
        for fd in [p.client, p.server] {
            var l = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
            close(fd)
        }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return addr
    }
}

/// The proxy could not listen.
public struct TCPProxyError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
