/// How long an HTTP client may take and how many connections a server holds, so that clients
/// cannot hold connections (and memory, and file descriptors) without end: a client that
/// trickles a byte at a time never trips an idle timeout, so the head and the body each get a
/// deadline of their own; and every server of the binary (a service, the gateway, the
/// dashboard, a worker's metrics) has a ceiling on open connections.
///
/// Why the ceiling: a review held 20,000 idle connections open on `ordershop up`'s metrics port
/// (no request sent): the process reached its descriptor limit (20,000), its gateway stopped
/// answering and libdispatch, unable to open a descriptor, stopped the process (signal 4). At
/// the ceiling a server stops accepting (new connections wait in the kernel's backlog) until one
/// of its own closes, which the deadlines below make happen within seconds for idle ones.
public struct HTTPServerLimits: Sendable {
    /// From the connection's start to its first complete request head.
    public var headerTimeout: Duration
    /// From the request head to the end of its body.
    public var bodyTimeout: Duration
    /// From the end of a response to the next complete request head on the same connection.
    /// Longer than the idle timeout of common HTTP clients (ours: 5 s, `makeHTTPClient()`;
    /// AsyncHTTPClient's default and `HTTPClient.shared`: 60 s), so that they close an idle
    /// connection first: a server closing it at the moment a client reuses it fails that
    /// request, and a POST is not retried (seen with 15 s: `BadRequestTests` got "connection
    /// reset by peer" on a loaded machine). 75 s, as nginx's `keepalive_timeout`.
    public var keepAliveTimeout: Duration
    /// No bytes read for this long closes the connection (Hummingbird's idle timeout); past the
    /// keep-alive timeout, so that it only ends connections stuck inside a request.
    public var idleTimeout: Duration
    /// The largest request body a route takes (the shop's commands: 413 beyond); no `100
    /// Continue` is sent for a larger one (``ContinueAnswer``).
    public var maximumBodyBytes: Int
    /// 4 MiB, the limit of the shop's commands.
    public static let defaultMaximumBodyBytes = 4 << 20
    /// Open connections the server holds at most (``defaultMaximumConnections`` for the shop's
    /// services, ``monitoring`` for the dashboard and metrics).
    public var maximumConnections: Int

    public init(
        headerTimeout: Duration = .seconds(10), bodyTimeout: Duration = .seconds(30), keepAliveTimeout: Duration = .seconds(75),
        idleTimeout: Duration = .seconds(90), maximumConnections: Int = HTTPServerLimits.defaultMaximumConnections,
        maximumBodyBytes: Int = HTTPServerLimits.defaultMaximumBodyBytes
    ) {
        self.maximumBodyBytes = maximumBodyBytes
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.keepAliveTimeout = keepAliveTimeout
        self.idleTimeout = idleTimeout
        self.maximumConnections = max(1, maximumConnections)
    }

    /// The dashboard's and a worker's metrics server: a scraper, the probes and a few browsers.
    /// Small, so that a flood there cannot take the descriptors the shop's own servers need.
    public static let monitoring = HTTPServerLimits(maximumConnections: 128)

    /// ``maximumConnections(forDescriptorLimit:)`` of the process's soft limit (256 when it
    /// cannot be read). The `ordershop` executable raises its soft limit to the hard one first
    /// (``DescriptorLimit``).
    public static var defaultMaximumConnections: Int {
        guard let soft = DescriptorLimit.current?.soft else { return 256 }
        return maximumConnections(forDescriptorLimit: soft)
    }

    /// A sixteenth of the descriptors the process may open beyond those kept for Redis, the HTTP
    /// clients and files (a quarter of the limit, at most 1,024), at most 16,384, and at least 64
    /// (the shop's HTTP clients keep up to 64 connections to each service: a ceiling below it
    /// would leave theirs waiting unaccepted) from a limit of 1,024 up, 16 below: 1,186 with a
    /// limit of 20,000, 64 with 1,024. Eleven such servers (`ordershop up` opens eight) stay under
    /// the limit together down to about 400 descriptors. Before, the floor was 256: at a limit of
    /// 1,024 they could accept 2,816 connections, and a flood of idle ones ran the process out of
    /// descriptors (100 % CPU in a failing accept loop, `/livez` unanswered; a user-style trial
    /// at 100).
    public static func maximumConnections(forDescriptorLimit soft: Int) -> Int {
        let kept = min(1_024, soft / 4)
        return min(16_384, max(soft >= 1_024 ? 64 : 16, (soft - kept) / 16))
    }
}
