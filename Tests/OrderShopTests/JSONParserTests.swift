@testable import OrderShop
import Testing

/// The request-body parser: everything JSON allows, nothing it does not, and errors that name the field.
@Suite struct JSONParserTests {
    func parse(_ text: String) throws(ShopError) -> JSONValue { try JSONValue.parse(Array(text.utf8)) }

    @Test func acceptsJSON() throws {
        #expect(try parse(#" {"a": [1, -2.5e3, true, false, null, "x"], "b": {}} "#)
            == .object(["a": .array([1, .number(-2500), .bool(true), .bool(false), .null, "x"]), "b": .object([:])]))
        #expect(try parse(#""\"\\\/\b\f\n\r\t\u00e9\ud83d\uded2""#) == .string("\"\\/\u{8}\u{c}\n\r\té🛒"))
        #expect(try parse("[]") == .array([]))
        #expect(try parse("0") == 0)
    }

    @Test(arguments: [
        ("{", "body"), (#"{"a": 1,}"#, "body"), (#"{"a": 01}"#, "a"), (#"{"a": 1e309}"#, "a"), (#"{"a": -1e400}"#, "a"),
        (#"{"a": "\ud800"}"#, "a"), ("{\"a\": \"x\u{1}\"}", "a"), (#"{"a": {"b": 1, "b": 2}}"#, "a"), (#"{"a": 1, "a": 2}"#, "a"),
        ("[1] 2", "body"), (#"{"a": tru}"#, "a"), (#"{"a": "\x"}"#, "a"),
    ])
    func refusesWhatJSONDoesNotAllow(_ text: String, _ field: String) {
        let error = #expect(throws: ShopError.self) { try parse(text) }
        #expect(error?.status == 400)
        #expect(error?.field == field, "\(text): \(String(describing: error))")
    }

    @Test func invalidUTF8NamesTheField() {
        let bytes = Array(#"{"name": "a"#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
        let error = #expect(throws: ShopError.self) { try JSONValue.parse(bytes) }
        #expect(error?.field == "name")
    }

    @Test func nestingIsBounded() {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: ShopError.self) { try parse(deep) }
    }
}
