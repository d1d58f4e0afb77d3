import Foundation

// HTTP over a raw socket, for tests of what a server does with clients that misbehave or speak
// old HTTP, which an HTTP client library would not send.

/// Sends `request` to 127.0.0.1:`port` over a raw socket and reads until the server closes (or
/// `timeout` passes without a byte): what the server answered, as text.
public func rawExchange(port: Int, _ request: [UInt8], timeout seconds: Int = 20) async throws -> String {
    try await rawExchangeSeeingClose(port: port, request, timeout: seconds).answer
}

/// ``rawExchange(port:_:timeout:)``, and whether the server closed the connection in order
/// (false: the reading stopped at the timeout, or at a reset, which the text then says). On a thread of its own: a blocking `recv` on the cooperative
/// pool held one of its two threads (2 cores) while the in-process server needed it to answer,
/// and the whole suite's servers timed out.
public func rawExchangeSeeingClose(port: Int, _ request: [UInt8], timeout seconds: Int = 20) async throws -> (answer: String, closedByServer: Bool) {
    let fd = try connectLoopback(port: port)
    return await withCheckedContinuation { (done: CheckedContinuation<(answer: String, closedByServer: Bool), Never>) in
        let thread = Thread {
            defer { close(fd) }
            var timeout = timeval(tv_sec: seconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            guard send(fd, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else {
                return done.resume(returning: ("send failed: errno \(errno)", false))
            }
            var answer: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            var n = 0
            repeat {
                n = recv(fd, &chunk, chunk.count, 0)
                if n > 0 { answer += chunk[0..<n] }
            } while n > 0
            // n < 0: the timeout (EAGAIN), or a reset, which is no orderly close: said in the text.
            let failure = n < 0 && errno != EAGAIN && errno != EWOULDBLOCK ? " [connection reset or failed: errno \(errno)]" : ""
            done.resume(returning: ((answer.isEmpty ? "nothing (errno \(errno))" : String(decoding: answer, as: UTF8.self)) + failure, n == 0))
        }
        thread.start()
    }
}

/// Sends `head` (a request's head, or whole requests and then a head) alone, reads what comes
/// within `interimTimeout` seconds, up to and with an interim `100 Continue`, then sends `body`
/// and reads until the server closes: what came before the body (the answers to the requests
/// before, and the 100, or not) and what came after. As
/// ``rawExchangeSeeingClose(port:_:timeout:)``, on a thread of its own.
public func rawExchangeExpectingContinue(
    port: Int, head: [UInt8], body: [UInt8], interimTimeout: Int = 5, timeout seconds: Int = 20
) async throws -> (beforeBody: String, afterBody: String) {
    let fd = try connectLoopback(port: port)
    return await withCheckedContinuation { (done: CheckedContinuation<(beforeBody: String, afterBody: String), Never>) in
        let thread = Thread {
            defer { close(fd) }
            func receiveTimeout(_ s: Int) {
                var timeout = timeval(tv_sec: s, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            guard send(fd, head, head.count, Int32(MSG_NOSIGNAL)) == head.count else { return done.resume(returning: ("send failed: errno \(errno)", "")) }
            receiveTimeout(interimTimeout)
            var interim: [UInt8] = []
            while !interim.ends(with: Array("100 Continue\r\n\r\n".utf8)) {
                let n = recv(fd, &chunk, chunk.count, 0)
                guard n > 0 else { break }
                interim += chunk[0..<n]
            }
            _ = send(fd, body, body.count, Int32(MSG_NOSIGNAL))
            receiveTimeout(seconds)
            var answer: [UInt8] = []
            var n = 0
            repeat {
                n = recv(fd, &chunk, chunk.count, 0)
                if n > 0 { answer += chunk[0..<n] }
            } while n > 0
            done.resume(returning: (String(decoding: interim, as: UTF8.self), String(decoding: answer, as: UTF8.self)))
        }
        thread.start()
    }
}

extension Array where Element == UInt8 {
    fileprivate func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix }
}

/// A blocking TCP connection to 127.0.0.1 (for clients that misbehave on purpose).
public func connectLoopback(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw RawSocketError("socket: errno \(errno)") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else {
        close(fd)
        throw RawSocketError("connect to 127.0.0.1:\(port): errno \(errno)")
    }
    return fd
}

/// A raw socket that could not be made or connected.
public struct RawSocketError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
