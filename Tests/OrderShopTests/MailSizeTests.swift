@testable import OrderShop
import Testing

/// Mails stay within msg's limit whatever the names stored before the input limits.
@Suite struct MailSizeTests {
    @Test func theLargestOrderMakesAMailMsgAccepts() {
        let huge = String(repeating: "ü", count: 1 << 15)  // a 64 KB name, written before the limits
        let mail = MailKind.thankYou(name: huge, products: Array(repeating: huge, count: Order.maxProducts))
        #expect(mail.utf8.count <= FieldLimits.mail, "\(mail.utf8.count) bytes")
        #expect(MailKind.of(mail) == .thankYou)
        #expect(MailKind.welcome(name: "Ann").contains("Dear Ann!"))
        #expect(MailKind.clip(huge).utf8.count <= FieldLimits.name)
    }
}
