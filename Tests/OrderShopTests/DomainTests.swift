@testable import OrderShop
import Testing
import AsyncHTTPClient
import RedisClient

/// JSON in and out: the original's shapes, and strings that survive any content.
@Suite struct DomainTests {
    // Redis 7.0's wording (seen here), Redis 7.2+ and Valkey's: both are 503 "its ACL", not a
    // 500 carrying the script's sha and line.
    @Test(arguments: [
        "ERR The user executing the script can't access at least one of the keys mentioned in the command script: 3b4d, on @user_script:61.",
        "ERR ACL failure in script: No permissions to access a key script: 3b4d, on @user_script:61.",
        "NOPERM this user has no permissions to access one of the keys used as arguments",
    ])
    func aclRefusalsOfScriptsAreUnavailableNotInternal(_ reply: String) {
        let shown = ShopError.from(RedisError(serverReply: reply))
        #expect(shown.status == 503)
        #expect(shown.message.contains("ACL"), "\(shown)")
        #expect(!shown.message.contains("user_script"), "\(shown)")
    }

    // Replies that say the command did not run and may run later: 503 without an outcome, not
    // a 500 (a trial's stopped shard answered "CLUSTERDOWN The cluster is down" with 500).
    @Test(arguments: [
        "CLUSTERDOWN The cluster is down", "CLUSTERDOWN Hash slot not served", "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "TRYAGAIN Multiple keys request during rehashing of slot", "MOVED 13865 127.0.0.1:40103", "ASK 3999 127.0.0.1:6381",
        "LOADING Redis is loading the dataset in memory", "READONLY You can't write against a read only replica.",
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    ])
    func repliesOfAServerThatServesNobodyNowAreUnavailable(_ reply: String) throws {
        let shown = ShopError.from(RedisError(serverReply: reply))
        #expect(shown.status == 503, "\(shown)")
        #expect(shown.outcome == nil, "\(shown)")
        #expect(shown.message.contains(String(reply.prefix { $0 != " " })), "\(shown)")
    }

    /// What retention waits for (``WorkerName/streams``) is what the workers subscribe to: a
    /// stream read by a worker but missing there would be trimmed before its group exists.
    @Test func retentionKnowsWhatEachWorkerReads() throws {
        let pool = try RedisConnectionPool(configuration: try RedisConfiguration(url: "redis://127.0.0.1:1"))
        for worker in WorkerName.allCases {
            let subscriptions = worker.subscriptions(readModel: ReadModel(pool: pool), mail: MailClient(baseURL: "http://127.0.0.1:1", client: .shared))
            #expect(Set(subscriptions.map(\.stream)) == Set(worker.streams), "\(worker)")
            #expect(subscriptions.allSatisfy { $0.group == worker.group }, "\(worker)")
        }
        #expect(WorkerName.groups(reading: EntityType.order.stream(.created)) == ["crm", "billing"])
        #expect(WorkerName.groups(reading: EntityType.inventory.stream(.updated)).isEmpty)
    }

    @Test func otherServerErrorsStayInternal() {
        let shown = ShopError.from(RedisError(serverReply: "ERR Error running script (call to f_3b4d): @user_script:12: bad argument"))
        #expect(shown.status == 500, "\(shown)")
        #expect(shown.message == "event store error: ERR bad argument", "\(shown)")
    }

    // What a demoted primary answers a command's script: the reply without the script's sha and
    // line, and what it means.
    @Test func aReplicasRefusalSaysWhatItMeans() {
        let shown = ShopError.from(
            RedisError(serverReply: "READONLY You can't write against a read only replica. script: fee9c5e27d3e4ab3b8e2b5a0c1d9f3e7a6b4c2d1, on @user_script:62."))
        #expect(shown.status == 503)
        #expect(!shown.message.contains("user_script") && !shown.message.contains("fee9c5"), "\(shown)")
        #expect(shown.message.contains("READONLY You can't write against a read only replica.") && shown.message.contains("did not run, retry"), "\(shown)")
        let moving = ShopError.from(RedisError(serverReply: "TRYAGAIN Multiple keys request during rehashing of slot"))
        #expect(moving.status == 503 && moving.message.contains("being moved between cluster nodes"), "\(moving)")
    }

    // Trial J: "event store unavailable: tlsHandshakeFailed" (the client's code name) when a
    // primary died mid-handshake.
    @Test func aTLSFailureIsSaidInWords() {
        for code in [RedisError.Code.tlsHandshakeFailed, .tlsVerifyFailed, .tlsHostnameMismatch] {
            let shown = ShopError.from(RedisError(code, "TLS handshake failed: error:0A000126:SSL routines::unexpected eof while reading"))
            #expect(shown.status == 503 && shown.message == "event store unavailable: a TLS connection to Redis failed", "\(shown)")
        }
    }

    @Test func jsonMediaTypeIsRecognisedByteByByte() {
        for accepted in ["application/json", "Application/JSON", " application/json ", "application/json; charset=utf-8", "\tapplication/json;x"] {
            #expect(isJSONMediaType(accepted), "\(accepted)")
        }
        for refused in ["", "text/plain", "application/jsonx", "application/json5", "application\u{0F}json", "application/ json", "application/x-www-form-urlencoded", "application/jsön"] {
            #expect(!isJSONMediaType(refused), "\(refused)")
        }
    }

    @Test func entitiesHaveTheOriginalsShape() {
        #expect(String(decoding: Customer(id: "c", name: "Ann", email: "a@b.c").json, as: UTF8.self) == #"{"id":"c","name":"Ann","email":"a@b.c"}"#)
        #expect(String(decoding: Product(id: "p", name: "Pen", price: 12).json, as: UTF8.self) == #"{"id":"p","name":"Pen","price":12}"#)
        #expect(String(decoding: Product(id: "p", name: "Pen", price: 12.5).json, as: UTF8.self) == #"{"id":"p","name":"Pen","price":12.5}"#)
        #expect(String(decoding: Inventory(id: "i", productID: "p", amount: 3).json, as: UTF8.self) == #"{"id":"i","product_id":"p","amount":3}"#)
        #expect(
            String(decoding: Order(id: "o", productIDs: ["p", "p"], customerID: "c").json, as: UTF8.self)
                == #"{"id":"o","product_ids":["p","p"],"customer_id":"c"}"#)
        #expect(String(decoding: Billing(id: "b", orderID: "o", done: 1_700_000_000).json, as: UTF8.self) == #"{"id":"b","order_id":"o","done":1700000000}"#)
    }

    @Test(arguments: ["plain", "quote \" and backslash \\", "new\nline\ttab\r", "\u{1}\u{1f}", "ünïcødé ✓ 🛒", "</script>", ""])
    func stringsRoundTrip(_ text: String) throws {
        let bytes = Customer(id: text, name: text, email: "x@y.z").json
        let back = try JSONCoding.decode(Customer.self, from: bytes)
        #expect(back.id == text && back.name == text)
    }

    @Test func fieldErrorsNameTheField() throws {
        func error(_ body: String) -> ShopError? {
            do {
                _ = try Customer(fields: try FieldReader(try JSONValue.parse(Array(body.utf8))), id: "x", current: nil)
                return nil
            } catch {
                return error
            }
        }
        #expect(error(#"{"name": "A"}"#)?.field == "email")
        #expect(error(#"{"email": "a@b.c"}"#)?.field == "name")
        #expect(error(#"{"email": "a@b.c", "name": 3}"#)?.field == "name")
        #expect(error(#"{"email": "a@b.c", "name": null}"#)?.field == "name")
        #expect(error(#"{"email": "a@b.c", "name": "A"}"#) == nil)
        #expect(error("{")?.status == 400)
        #expect(error("[]")?.status == 400)
        #expect(error(#"{"name": true, "email": "a@b.c"}"#)?.message.contains("must be a string") == true)
        // Null is said as null, not as missing; a number of the wrong kind by its value.
        #expect(error(#"{"email": null, "name": "A"}"#)?.message == "field 'email' is null; it needs a value")
        #expect(error(#"{"name": "A"}"#)?.message == "missing field 'email'")
        #expect(error(#"{"email": "a@b.c", "name": 1.5}"#)?.message == "field 'name' must be a string, got 1.5")
    }

    /// The names a body may hold are the names an entity is written with (`fieldNames` is
    /// stated beside `jsonFields`, so a field added to one and not the other fails here).
    @Test func fieldNamesAreTheWrittenOnes() {
        #expect(Customer(id: "c", name: "n", email: "e@x").jsonFields.map(\.0) == Customer.fieldNames)
        #expect(Product(id: "p", name: "n", price: 1).jsonFields.map(\.0) == Product.fieldNames)
        #expect(Inventory(id: "i", productID: "p", amount: 1).jsonFields.map(\.0) == Inventory.fieldNames)
        #expect(Order(id: "o", productIDs: ["p"], customerID: "c").jsonFields.map(\.0) == Order.fieldNames)
        #expect(Billing(id: "b", orderID: "o", done: 1).jsonFields.map(\.0) == Billing.fieldNames)
    }

    @Test func orderCountsUnits() {
        #expect(Order(id: "o", productIDs: ["a", "b", "a"], customerID: "c").units == ["a": 2, "b": 1])
    }

    @Test func mailKindsAreRecognised() {
        #expect(MailKind.of(MailKind.welcome(name: "A")) == .welcome)
        #expect(MailKind.of(MailKind.goodbye(name: "A")) == .goodbye)
        #expect(MailKind.of(MailKind.thankYou(name: "A", products: ["x", "y"])) == .thankYou)
        #expect(MailKind.thankYou(name: "A", products: ["x", "y"]).contains("2 products"))
        #expect(MailKind.of(MailKind.pleasePay(name: "A", sum: "12")) == .pleasePay)
        #expect(MailKind.of(MailKind.paymentReceived(name: "A", sum: "12", orderID: "o")) == .paymentReceived)
        #expect(MailHandlerSupport.format(12) == "12")
        #expect(MailHandlerSupport.format(12.5) == "12.50")
        #expect(MailHandlerSupport.format(0.05) == "0.05")
        // Amounts whose cents do not fit an Int (a price of 1e17 trapped the billing worker).
        #expect(MailHandlerSupport.format(1e16) == "10000000000000000.00")
        #expect(MailHandlerSupport.format(1e17) == "100000000000000000.00")
        let huge = MailHandlerSupport.format(1e300)
        #expect(huge.count == 304 && huge.hasPrefix("1") && huge.hasSuffix(".00"), "\(huge)")
    }

    /// The reason a malformed order is dead-lettered with reads "an order" (it said "a order").
    @Test func malformedReasonsUseTheRightArticle() {
        guard case .failure(let order) = Order.shaped(Array(#"{"id": "o", "product_ids": "x", "customer_id": "c"}"#.utf8)) else {
            Issue.record("an order with a string for product_ids was taken")
            return
        }
        #expect(order.reason.hasPrefix("entity is not an order: "), "\(order.reason)")
        guard case .failure(let customer) = Customer.shaped(Array(#"{"id": "c", "name": 1, "email": "a@b"}"#.utf8)) else {
            Issue.record("a customer with a number for a name was taken")
            return
        }
        #expect(customer.reason.hasPrefix("entity is not a customer: "), "\(customer.reason)")
    }

    /// A bill is exact to the cent up to the largest order at the highest price (the Double sum
    /// of this order was one cent short).
    @Test func sumsAreExactToTheCent() {
        #expect(MailHandlerSupport.exactSum(Array(repeating: 999_999_999.99, count: 999) + [0.01]) == "998999999990.02")
        #expect(MailHandlerSupport.exactSum(Array(repeating: 999_999_999.99, count: 1_000)) == "999999999990")
        #expect(MailHandlerSupport.exactSum(Array(repeating: 0.1, count: 3)) == "0.30")
        #expect(MailHandlerSupport.exactSum([12, 0.5]) == "12.50")
        #expect(MailHandlerSupport.exactSum([19.99, 0.01]) == "20")
        #expect(MailHandlerSupport.exactSum([]) == "0")
        // Fractions of a cent round half up, once, on the total.
        #expect(MailHandlerSupport.exactSum([0.005, 0.005, 0.005]) == "0.02")
        // Beyond 18 digits of cents the Double path writes it (MailHandlerSupport.format).
        #expect(MailHandlerSupport.exactSum([1e17]) == nil)
        #expect(MailHandlerSupport.exactSum([.infinity]) == nil)
    }
}
