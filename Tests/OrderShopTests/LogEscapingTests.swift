import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
@testable import OrderShop
import RedisClient
import Synchronization
import TestSupport
import Testing

extension ShopIntegration {
    /// Issue 13, Why 6: text from requests is escaped in log lines.
    @Suite struct LogEscapingTests {
        /// Why 6: NUL, BEL and ESC from names were written raw into log lines.
        @Test func controlCharactersAreEscapedInLogs() async throws {
            try await withRedisServer { server in
                let pool = try server.makePool()
                let lines = LogCapture()
                var logger = Logger(label: "capture") { _ in lines }
                logger.logLevel = .info
                let context = try ShopContext(pool: pool, logger: logger)
                let app = Application(router: buildMsgRouter(context: context), logger: logger)
                try await app.test(.router) { client in
                    // And a right-to-left override (U+202E), which makes the rest of a line read backwards.
                    let body = JSONCoding.encode(["to": "a\u{0}@b.c", "msg": "Dear \u{7}\u{1b}[31mEvil\u{1b}[0m\nFORGED LINE \u{202E}desrever"] as JSONValue)
                    try await client.execute(uri: "/email", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(bytes: body)) {
                        #expect($0.status == .ok)
                    }
                }
                let logged = lines.messages
                #expect(logged.contains { $0.contains("Evil") }, "\(logged)")
                for line in logged {
                    #expect(!line.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F || $0.value == 0x202E }, "raw control character in \(line.debugDescription)")
                }
                await pool.shutdown()
            }
        }
    }
}

/// A log handler that keeps every line (for tests of what is logged).
final class LogCapture: LogHandler, @unchecked Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        /// The line's own metadata, each value as text.
        var metadata: [String: String]
    }

    private let lock = Mutex<[Entry]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    var messages: [String] { lock.withLock { $0.map(\.message) } }
    var entries: [Entry] { lock.withLock { $0 } }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let entry = Entry(level: event.level, message: event.message.description, metadata: (event.metadata ?? [:]).mapValues { "\($0)" })
        lock.withLock { $0.append(entry) }
    }
}
