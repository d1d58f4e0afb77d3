#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking TCP or unix socket whose calls wait with poll(2) up to a deadline.
final class SocketStream: ByteStream {
    let fileDescriptor: Int32
    private var closed = false
    /// Whether any byte came from the server yet (see ``plainOnTLSHint``).
    private var receivedData = false
    var tlsDetails: TLSDetails? { nil }

    private init(fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
    }

    deinit { close() }

    /// Connects to the endpoint within the deadline.
    static func connect(to endpoint: RedisConfiguration.Endpoint, deadline: Deadline) throws(RedisError) -> SocketStream {
        switch endpoint {
        case .tcp(let host, let port): try connectTCP(host: host, port: port, deadline: deadline)
        case .unix(let path): try connectUnix(path: path, deadline: deadline)
        }
    }

    private static func connectTCP(host: String, port: Int, deadline: Deadline) throws(RedisError) -> SocketStream {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var result: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else {
            throw RedisError(.hostNotFound, "cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(result) }
        var lastError = RedisError(.connectionRefused, "no address for \(host)")
        var info: UnsafeMutablePointer<addrinfo>? = first
        while let ai = info {
            info = ai.pointee.ai_next
            do {
                let stream = try connectAddress(
                    family: ai.pointee.ai_family, address: ai.pointee.ai_addr, length: ai.pointee.ai_addrlen,
                    description: "\(host):\(port)", deadline: deadline)
                var one: Int32 = 1
                _ = setsockopt(stream.fileDescriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                _ = setsockopt(stream.fileDescriptor, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
                return stream
            } catch {
                lastError = error
                if error.code == .connectTimeout { throw error }
            }
        }
        throw lastError
    }

    private static func connectUnix(path: String, deadline: Deadline) throws(RedisError) -> SocketStream {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        let bytes = Array(path.utf8)
        guard bytes.count < capacity else { throw RedisError(.invalidConfiguration, "unix socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return try withUnsafePointer(to: &address) { pointer throws(RedisError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(RedisError) in
                try connectAddress(
                    family: AF_UNIX, address: sa, length: socklen_t(MemoryLayout<sockaddr_un>.size),
                    description: path, deadline: deadline)
            }
        }
    }

    private static func connectAddress(
        family: Int32, address: UnsafePointer<sockaddr>?, length: socklen_t, description: String, deadline: Deadline
    ) throws(RedisError) -> SocketStream {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw errnoError(.io, "socket()") }
        let stream = SocketStream(fileDescriptor: fd)
        if Glibc.connect(fd, address, length) == 0 { return stream }
        let err = errno
        guard err == EINPROGRESS || err == EAGAIN else {
            throw connectError(err, description)
        }
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        while true {
            let n = poll(&pfd, 1, deadline.remainingMilliseconds)
            if n < 0 && errno == EINTR { continue }
            if n == 0 { throw RedisError(.connectTimeout, "connecting to \(description) timed out") }
            break
        }
        var soError: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
        if soError != 0 { throw connectError(soError, description) }
        return stream
    }

    private static func connectError(_ err: Int32, _ description: String) -> RedisError {
        switch err {
        case ECONNREFUSED:
            RedisError(.connectionRefused, "connection refused by \(description)")
        case ENOENT:
            // Refused as far as retrying goes (a server may yet create it), but said as it is:
            // a trial's `--url unix:///nonexist.sock` read "connection refused".
            RedisError(.connectionRefused, "no socket file at \(description): nothing listens there")
        case ETIMEDOUT:
            RedisError(.connectTimeout, "connecting to \(description) timed out")
        default:
            RedisError(.io, "connect to \(description): \(String(cString: strerror(err)))")
        }
    }

    func writeAll(_ bytes: UnsafeRawBufferPointer, deadline: Deadline, written: inout Int) throws(RedisError) {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let n = send(fileDescriptor, base + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n > 0 {
                offset += n
                written += n
                continue
            }
            let err = errno
            if err == EINTR { continue }
            if err == EAGAIN || err == EWOULDBLOCK {
                try wait(for: Int16(POLLOUT), deadline: deadline)
                continue
            }
            throw errnoError(.io, "write", err)
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline) throws(RedisError) -> Int {
        while true {
            let n = recv(fileDescriptor, buffer.baseAddress, buffer.count, 0)
            if n > 0 {
                receivedData = true
                return n
            }
            if n == 0 { throw RedisError(.connectionClosed, "server closed the connection" + plainOnTLSHint) }
            let err = errno
            if err == EINTR { continue }
            if err == EAGAIN || err == EWOULDBLOCK {
                try wait(for: Int16(POLLIN), deadline: deadline)
                continue
            }
            if err == ECONNRESET, !receivedData {
                throw RedisError(.connectionClosed, "server reset the connection" + plainOnTLSHint)
            }
            throw errnoError(.io, "read", err)
        }
    }

    func waitUntilReadable(deadline: Deadline) throws(RedisError) {
        try wait(for: Int16(POLLIN), deadline: deadline)
    }

    /// A plain-text client on a TLS port: the server takes our command for a broken ClientHello
    /// and drops the connection before any reply. Said only then (a user-style pass saw a bare
    /// "Connection reset by peer"; the reverse mistake already had its hint).
    private var plainOnTLSHint: String {
        receivedData ? "" : " before its first reply (if it is a TLS port, use rediss://)"
    }

    /// Waits until the socket is ready for `events`, or throws `.timeout` at the deadline.
    func wait(for events: Int16, deadline: Deadline, timeoutCode: RedisError.Code = .timeout) throws(RedisError) {
        var pfd = pollfd(fd: fileDescriptor, events: events, revents: 0)
        while true {
            let n = poll(&pfd, 1, deadline.remainingMilliseconds)
            if n > 0 { return }  // readable, writable, or an error/hangup that the next call reports
            if n == 0 {
                throw RedisError(timeoutCode, timeoutCode == .timeout ? "no reply within the timeout" : "TLS handshake timed out")
            }
            if errno != EINTR { throw errnoError(.io, "poll") }
        }
    }

    func isReusable() -> Bool {
        guard !closed else { return false }
        var pfd = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 0) > 0 else { return true }
        // Readable while idle: either end of stream (the server closed it) or bytes nobody asked
        // for. Both make the connection unusable.
        return false
    }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fileDescriptor)
    }
}

func errnoError(_ code: RedisError.Code, _ call: String, _ err: Int32 = errno) -> RedisError {
    RedisError(code, "\(call): \(String(cString: strerror(err)))")
}
