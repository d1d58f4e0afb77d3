/// Random (version 4) UUIDs as lowercase text: entity ids, event ids, trace ids.
///
/// Why not `UUID().uuidString.lowercased()`: on Linux, Foundation's `UUID()` opens, reads and
/// closes `/dev/urandom` for every UUID. Under `POST /customers` load (three UUIDs per request)
/// that was 3.8 % of the samples of `ordershop up`'s cooperative threads, two thirds of it in
/// `open`. Here the 16 bytes come from `SystemRandomNumberGenerator` (on Linux `getrandom(2)`,
/// the kernel's CSPRNG behind `/dev/urandom`, without a file): event ids must never collide,
/// since a worker takes a repeated one for a duplicate.
public enum RandomUUID {
    /// A new UUID, such as `0f8fad5b-d9cb-469f-a165-70867728950e`.
    public static func string() -> String {
        var bytes = randomBytes()
        bytes.6 = (bytes.6 & 0x0F) | 0x40  // version 4
        bytes.8 = (bytes.8 & 0x3F) | 0x80  // variant 10 (RFC 9562)
        return withUnsafeBytes(of: &bytes) { format($0) }
    }

    /// The text of 16 bytes, lowercase hex in groups of 8-4-4-4-12.
    static func format(_ bytes: UnsafeRawBufferPointer) -> String {
        precondition(bytes.count == 16)
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 36) { text in
            var at = 0
            for i in 0..<16 {
                if i == 4 || i == 6 || i == 8 || i == 10 {
                    text[at] = UInt8(ascii: "-")
                    at += 1
                }
                text[at] = digits.utf8Start[Int(bytes[i] >> 4)]
                text[at + 1] = digits.utf8Start[Int(bytes[i] & 0x0F)]
                at += 2
            }
            return at
        }
    }

    private typealias Bytes = (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    private static func randomBytes() -> Bytes {
        var bytes: Bytes = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var generator = SystemRandomNumberGenerator()
        withUnsafeMutableBytes(of: &bytes) { buffer in
            buffer.storeBytes(of: generator.next() as UInt64, toByteOffset: 0, as: UInt64.self)
            buffer.storeBytes(of: generator.next() as UInt64, toByteOffset: 8, as: UInt64.self)
        }
        return bytes
    }
}
