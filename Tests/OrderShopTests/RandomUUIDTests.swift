import Foundation
@testable import OrderShop
import Testing

/// RandomUUID makes what `UUID().uuidString.lowercased()` made: version-4 UUIDs in lowercase.
@Suite struct RandomUUIDTests {
    @Test func eachIsAVersion4UUIDInLowercase() throws {
        for _ in 0..<1_000 {
            let text = RandomUUID.string()
            let parsed = try #require(UUID(uuidString: text), "\(text) is not a UUID")
            #expect(parsed.uuidString.lowercased() == text)
            let bytes = withUnsafeBytes(of: parsed.uuid) { Array($0) }
            #expect(bytes[6] >> 4 == 4, "version of \(text)")
            #expect(bytes[8] >> 6 == 0b10, "variant of \(text)")
        }
    }

    @Test func theyDoNotRepeat() {
        var seen = Set<String>()
        for _ in 0..<100_000 { seen.insert(RandomUUID.string()) }
        #expect(seen.count == 100_000)
    }

    /// Every bit but the six fixed ones varies (a byte left out or copied twice would show).
    @Test func everyRandomBitVaries() {
        var ones = [Int](repeating: 0, count: 128)
        let n = 4_000
        for _ in 0..<n {
            let uuid = UUID(uuidString: RandomUUID.string())!.uuid
            withUnsafeBytes(of: uuid) { bytes in
                for bit in 0..<128 where bytes[bit / 8] & (0x80 >> UInt8(bit % 8)) != 0 { ones[bit] += 1 }
            }
        }
        let fixed: [Int: Int] = [48: 0, 49: n, 50: 0, 51: 0, 64: n, 65: 0]
        for bit in 0..<128 {
            if let expected = fixed[bit] {
                #expect(ones[bit] == expected, "bit \(bit)")
            } else {
                // Binomial(4000, 0.5): mean 2000, sd ~32; 1700..2300 is more than 9 sd.
                #expect((1_700...2_300).contains(ones[bit]), "bit \(bit) set \(ones[bit]) times in \(n)")
            }
        }
    }

    @Test func formatGroupsSixteenBytes() {
        let bytes: [UInt8] = [0x0f, 0x8f, 0xad, 0x5b, 0xd9, 0xcb, 0x46, 0x9f, 0xa1, 0x65, 0x70, 0x86, 0x77, 0x28, 0x95, 0x0e]
        #expect(bytes.withUnsafeBytes { RandomUUID.format($0) } == "0f8fad5b-d9cb-469f-a165-70867728950e")
    }
}
