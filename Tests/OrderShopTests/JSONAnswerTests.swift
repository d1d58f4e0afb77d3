import Foundation
@testable import OrderShop
import Testing

/// The answers written without Foundation's coders (a create's ids, msg's receipt, the mail a
/// worker posts): the same JSON as before, read back as written.
@Suite struct JSONAnswerTests {
    static let awkward = ["plain", "with \"quotes\" and \\ backslash", "a/b", "line\nbreak\ttab", "é ü 中文 🙂", ""]

    @Test("a create's ids: the bytes Foundation's encoder wrote (sorted keys, slashes unescaped)")
    func idsAsBefore() async throws {
        let ids = [UUID().uuidString.lowercased()] + Self.awkward
        let body = try await InProcessServices.collect(JSONResponse.strings(ids).body, upTo: 1 << 20)
        #expect(Array(body.readableBytesView) == JSONCoding.encode(ids))
        #expect(try await InProcessServices.collect(JSONResponse.strings([]).body, upTo: 16) == .init(string: "[]"))
    }

    @Test("a receipt is read back as written, whatever its strings hold", arguments: awkward)
    func receiptRoundTrip(_ text: String) throws {
        let receipt = MailReceipt(status: "sent", id: "1796419928906-4", key: "crm:" + text)
        #expect(try MailReceipt(json: receipt.json) == receipt)
        // And as Foundation's decoder reads it (a client of msg's HTTP API may use it).
        #expect(try JSONDecoder().decode(MailReceipt.self, from: Data(receipt.json)) == receipt)
        #expect(receipt.json == JSONCoding.encode(receipt))
    }

    @Test("a receipt that is not one is refused, naming the field")
    func malformedReceipt() {
        for (body, field) in [("{\"status\":\"sent\",\"id\":\"1-0\"}", "key"), ("{\"status\":1,\"id\":\"1-0\",\"key\":\"k\"}", "status"), ("[]", "body")] {
            let error = #expect(throws: ShopError.self) { try MailReceipt(json: Array(body.utf8)) }
            #expect(error?.field == field, "\(body)")
        }
    }
}
