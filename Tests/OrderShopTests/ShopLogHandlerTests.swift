import Logging
@testable import OrderShop
import Synchronization
import Testing

/// ShopLogHandler writes what StreamLogHandler wrote (tests and operators read these lines:
/// `trace_id=...`, the metadata in key order), only later.
@Suite struct ShopLogHandlerTests {
    struct Failure: Error, CustomStringConvertible {
        var description: String { "it broke" }
    }

    @Test func linesAreStreamLogHandlersLines() {
        let provider = Logger.MetadataProvider { ["trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "shared": "provided"] }
        let ours = Lines(), theirs = Lines()
        var shop = Logger(label: "crm") { label in ShopLogHandler(label: label, stream: ours, metadataProvider: provider) }
        var stream = Logger(label: "crm") { label in StreamLogHandler(label: label, stream: theirs, metadataProvider: provider) }
        func both(_ change: (inout Logger) -> Void) {
            change(&shop)
            change(&stream)
        }
        both { $0.logLevel = .info }
        both { $0[metadataKey: "service"] = "customer" }
        both { $0[metadataKey: "hb.request.id"] = "17" }
        both { $0[metadataKey: "shared"] = "logger" }
        both { $0.debug("not written") }
        both { $0.info("plain") }
        both { $0.warning("with its own", metadata: ["shared": "line", "attempt": "2"]) }
        both { $0.error("failed", error: Failure()) }
        both { $0[metadataKey: "service"] = nil }
        both { $0.notice("after removing one") }

        let a = ours.lines.map(Self.withoutTimestamp), b = theirs.lines.map(Self.withoutTimestamp)
        #expect(a.count == 4)
        #expect(a == b)
        #expect(a.first?.contains("trace_id=4bf92f3577b34da6a3ce929d0e0e4736") == true)
    }

    @Test func noMetadataWritesNoMetadata() {
        let ours = Lines(), theirs = Lines()
        Logger(label: "msg") { ShopLogHandler(label: $0, stream: ours, metadataProvider: nil) }.info("mail")
        Logger(label: "msg") { StreamLogHandler(label: $0, stream: theirs, metadataProvider: nil) }.info("mail")
        #expect(ours.lines.map(Self.withoutTimestamp) == theirs.lines.map(Self.withoutTimestamp))
        #expect(ours.lines.map(Self.withoutTimestamp) == ["info msg: [OrderShopTests] mail\n"])
    }

    /// The first field is the time, to the second.
    static func withoutTimestamp(_ line: String) -> String {
        String(line.drop { $0 != " " }.dropFirst())
    }

    final class Lines: TextOutputStream, Sendable {
        private let written = Mutex<[String]>([])
        var lines: [String] { written.withLock { $0 } }
        func write(_ string: String) { written.withLock { $0.append(string) } }
    }
}
