import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOHTTP1
@testable import OrderShop
import RedisClient
@testable import StreamWorker
import TestSupport
import Testing

/// The dashboard's routes, driven without a socket (issue 17): its data shows streams, groups,
/// consumers and dead letters; replay and purge need the admin token and change nothing without it.
@Suite struct DashboardTests {
    static let json: HTTPFields = [.contentType: "application/json"]
    static func bearer(_ token: String) -> HTTPFields { [.contentType: "application/json", .authorization: "Bearer \(token)"] }
    static var target: ByteBuffer { ByteBuffer(string: #"{"stream":"\#(DashboardFixture.stream)","group":"\#(DashboardFixture.group)"}"#) }

    static func state(_ client: some TestClientProtocol, headers: HTTPFields = [:]) async throws -> DashboardStateReply {
        try await client.execute(uri: "/api/state", method: .get, headers: headers) { response in
            #expect(response.status == .ok, "\(String(buffer: response.body))")
            return try JSONDecoder().decode(DashboardStateReply.self, from: Data(buffer: response.body))
        }
    }

    /// The state's dead letters carry their fields cut short: whole, a trial's 60 letters of
    /// 200-KB entities made every poll 10 MB.
    @Test func aDeadLettersLongFieldsAreClippedInTheState() {
        let letter = DeadLetters.Letter(
            id: "2-0", originalID: "1-0", reason: "malformed", error: "e", deliveryCount: 1,
            fields: ["entity": String(repeating: "x", count: 200_000), "event_id": "e1"])
        let clipped = OperationsReader.clipped(letter)
        #expect(clipped.fields["event_id"] == "e1")
        #expect(clipped.fields["entity"] == String(repeating: "x", count: 512) + "… (200000 bytes)")
        #expect(clipped.id == "2-0" && clipped.reason == "malformed")
        // The reason and error too (quoting a 200-KB id they made each poll 20 MB with 60
        // letters), and text-reordering characters written out (U+202E turned a reason around).
        var long = letter
        long.reason = "no customer " + String(repeating: "y", count: 200_000)
        long.error = "invalid: a\u{202E}cba"
        let shown = OperationsReader.clipped(long)
        #expect(shown.reason == "no customer " + String(repeating: "y", count: 2_048 - 12) + "… (200012 bytes)")
        #expect(shown.error == "invalid: a\\u{202e}cba", "\(shown.error)")
    }

    @Test func theStateShowsTheStreamItsGroupConsumersAndDeadLetters() async throws {
        try await withDashboard { fixture in
            try await Application(router: buildDashboardRouter(fixture.dashboard)).test(.router) { client in
                let state = try await Self.state(client)
                let stream = try #require(state.streams.first { $0.name == DashboardFixture.stream }, "\(state.streams.map(\.name))")
                #expect(stream.length == 3)
                let group = try #require(stream.groups.first { $0.status.group == DashboardFixture.group })
                #expect(group.status.consumers.map(\.name).contains("mailer-1"), "\(group.status.consumers)")
                #expect(group.status.deadLetters == 1)
                let letter = try #require(group.deadLetters.first)
                #expect(letter.error.contains("customer ghost does not exist"), "\(letter)")
                #expect(!letter.reason.isEmpty && !letter.originalID.isEmpty && letter.deliveryCount == 1, "\(letter)")
                #expect(letter.fields["event_id"] == fixture.poisonEventID)
                #expect(state.actions)

                // The page: plain HTML with its script inline, nothing loaded from elsewhere.
                try await client.execute(uri: "/", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType]?.hasPrefix("text/html") == true)
                    let page = String(buffer: response.body)
                    #expect(page.contains("api/state"))
                    for external in ["src=", "<link", "@import", "https://", "url("] { #expect(!page.contains(external), "\(external)") }
                }
            }
        }
    }

    @Test func replayNeedsTheTokenThenTheWorkerHandlesTheEntry() async throws {
        try await withDashboard { fixture in
            fixture.fix()
            try await Application(router: buildDashboardRouter(fixture.dashboard)).test(.router) { client in
                for headers in [Self.json, Self.bearer("wrong")] {
                    try await client.execute(uri: "/api/replay", method: .post, headers: headers, body: Self.target) { response in
                        #expect(response.status == .unauthorized, "\(String(buffer: response.body))")
                        #expect(String(buffer: response.body).contains("\"error\""))
                    }
                }
                // Nothing moved.
                #expect(try await fixture.deadLetters.list().count == 1)
                #expect(try await !fixture.processed().contains(fixture.poisonEventID))

                // Beside it, a letter that keeps part of its entry's fields: left, and said.
                let dlq = fixture.deadLetters
                let cut = try #require(
                    try await dlq.client.send(
                        XADD(RedisArgument(dlq.key), fields: [StreamField("event_id", "wide"), StreamField("dlq.omitted_fields", "9000")])))
                try await client.execute(uri: "/api/replay", method: .post, headers: Self.bearer(DashboardFixture.token), body: Self.target) { response in
                    #expect(response.status == .ok, "\(String(buffer: response.body))")
                    let body = String(buffer: response.body)
                    #expect(body.contains(#""replayed":1"#) && body.contains(#""notReplayed":["\#(cut)"]"#), "\(body)")
                    #expect(body.contains("keeps only part of its entry's fields"), "\(body)")
                }
                #expect(try await fixture.deadLetters.list().map(\.id) == [cut])
                #expect(await eventually { try await fixture.processed().contains(fixture.poisonEventID) })
                #expect(try await Self.state(client).streams.first { $0.name == DashboardFixture.stream }?.groups.first?.status.deadLetters == 1)
            }
        }
    }

    @Test func purgeNeedsTheToken() async throws {
        try await withDashboard { fixture in
            try await Application(router: buildDashboardRouter(fixture.dashboard)).test(.router) { client in
                for headers in [Self.json, Self.bearer("wrong")] {
                    try await client.execute(uri: "/api/purge", method: .post, headers: headers, body: Self.target) { response in
                        #expect(response.status == .unauthorized, "\(String(buffer: response.body))")
                    }
                }
                #expect(try await fixture.deadLetters.list().count == 1)
                // A page of another site cannot use the token either.
                var foreign = Self.bearer(DashboardFixture.token)
                foreign[.origin] = "http://evil.example"
                try await client.execute(uri: "/api/purge", method: .post, headers: foreign, body: Self.target) { response in
                    #expect(response.status == .forbidden)
                }
                #expect(try await fixture.deadLetters.list().count == 1)

                // Ids that are not stream ids: 400 naming the field, nothing deleted (before: 500
                // with Redis's "Invalid stream ID").
                let garbage = ByteBuffer(string: #"{"stream": "\#(DashboardFixture.stream)", "group": "\#(DashboardFixture.group)", "ids": ["x"]}"#)
                for path in ["/api/purge", "/api/replay"] {
                    try await client.execute(uri: path, method: .post, headers: Self.bearer(DashboardFixture.token), body: garbage) { response in
                        #expect(response.status == .badRequest, "\(String(buffer: response.body))")
                        #expect(String(buffer: response.body).contains(#""field":"ids""#), "\(String(buffer: response.body))")
                    }
                }
                #expect(try await fixture.deadLetters.list().count == 1)
                // A body that is not the action's: 400 naming the field (before: no field at all).
                // `"ids": null` purged every letter (a client's "none selected"); a duplicate key
                // was read as its first value.
                let named = #""stream": "\#(DashboardFixture.stream)", "group": "\#(DashboardFixture.group)""#
                for (body, field) in [
                    ("{", "body"), ("[]", "body"), (#"{"stream": 5, "group": "g"}"#, "stream"), (#"{"stream": "s"}"#, "group"),
                    ("{\(named), \"ids\": null}", "ids"), ("{\(named), \"ids\": \"1-1\"}", "ids"), ("{\(named), \"ids\": [1]}", "ids"),
                    ("{\"stream\": \"nope\", \(named)}", "body"),
                ] {
                    try await client.execute(uri: "/api/purge", method: .post, headers: Self.bearer(DashboardFixture.token), body: ByteBuffer(string: body)) { response in
                        #expect(response.status == .badRequest && String(buffer: response.body).contains(#""field":"\#(field)""#), "\(body): \(String(buffer: response.body))")
                    }
                }
                #expect(try await fixture.deadLetters.list().count == 1)

                // Ids that are (no longer) dead letters: nothing done, and the answer says how
                // many were not found (it was a bare {"purged":0}, which the page showed as done).
                let gone = ByteBuffer(string: #"{"stream": "\#(DashboardFixture.stream)", "group": "\#(DashboardFixture.group)", "ids": ["1-1", "2-2", "1-1"]}"#)
                for path in ["/api/purge", "/api/replay"] {
                    try await client.execute(uri: path, method: .post, headers: Self.bearer(DashboardFixture.token), body: gone) { response in
                        #expect(response.status == .ok && String(buffer: response.body).contains(#""notFound":2"#), "\(path): \(String(buffer: response.body))")
                    }
                }
                #expect(try await fixture.deadLetters.list().count == 1)
                // No ids (a filter that matched nothing): nothing done. A purge of `"ids": []`
                // deleted every letter of the group (a trial).
                let none = ByteBuffer(string: #"{"stream": "\#(DashboardFixture.stream)", "group": "\#(DashboardFixture.group)", "ids": []}"#)
                for path in ["/api/purge", "/api/replay"] {
                    try await client.execute(uri: path, method: .post, headers: Self.bearer(DashboardFixture.token), body: none) { response in
                        let body = String(buffer: response.body)
                        #expect(response.status == .ok && (body.contains(#""purged":0"#) || body.contains(#""replayed":0"#)), "\(path): \(body)")
                    }
                }
                #expect(try await fixture.deadLetters.list().count == 1)

                try await client.execute(uri: "/api/purge", method: .post, headers: Self.bearer(DashboardFixture.token), body: Self.target) { response in
                    #expect(response.status == .ok, "\(String(buffer: response.body))")
                    #expect(String(buffer: response.body).contains(#""purged":1"#) && !String(buffer: response.body).contains("notFound"))
                }
                #expect(try await fixture.deadLetters.list().isEmpty)
                #expect(try await !fixture.processed().contains(fixture.poisonEventID))
            }
        }
    }

    /// Started without a token, the actions are refused whatever the request carries.
    @Test func withoutAConfiguredTokenActionsAreRefused() async throws {
        try await withDashboard(token: nil) { fixture in
            try await Application(router: buildDashboardRouter(fixture.dashboard)).test(.router) { client in
                #expect(try await !Self.state(client).actions)
                for path in ["/api/replay", "/api/purge"] {
                    try await client.execute(uri: path, method: .post, headers: Self.bearer(""), body: Self.target) { response in
                        #expect(response.status == .unauthorized)
                    }
                }
                #expect(try await fixture.deadLetters.list().count == 1)
                // A read through another name says why (it said "no admin token is configured").
                try await client.execute(uri: "/api/state", method: .get, headers: [HTTPField.Name("Host")!: "shop-host:5080"]) { response in
                    #expect(response.status == .unauthorized)
                    let body = String(buffer: response.body)
                    #expect(body.contains("read only through a loopback name") && body.contains("this request names shop-host"), "\(body)")
                }
            }
        }
    }

    /// Bound to an address other than loopback, the data needs the token too.
    @Test func offLoopbackReadsNeedTheToken() async throws {
        try await withDashboard(host: "0.0.0.0") { fixture in
            try await Application(router: buildDashboardRouter(fixture.dashboard)).test(.router) { client in
                try await client.execute(uri: "/api/state", method: .get) { response in
                    #expect(response.status == .unauthorized)
                }
                let state = try await Self.state(client, headers: Self.bearer(DashboardFixture.token))
                #expect(state.streams.map(\.name).contains(DashboardFixture.stream))
            }
        }
    }

    /// On loopback, a request that names another host (a page that pointed its own name at
    /// 127.0.0.1) reads nothing without the token.
    @Test func aForeignHostNameReadsNothingWithoutTheToken() async throws {
        try await withDashboard { fixture in
            try await Application(router: buildDashboardRouter(fixture.dashboard)).test(.router) { client in
                try await client.execute(uri: "/api/state", method: .get, headers: [HTTPField.Name("Host")!: "rebound.example:5080"]) { response in
                    #expect(response.status == .unauthorized)
                }
                var withToken = Self.bearer(DashboardFixture.token)
                withToken[HTTPField.Name("Host")!] = "rebound.example:5080"
                try await client.execute(uri: "/api/state", method: .get, headers: withToken) { response in
                    #expect(response.status == .ok)
                }
            }
        }
    }

    /// A name that only begins like a loopback address (`127.0.0.1.attacker.example`, which a
    /// rebinding page points at 127.0.0.1) is a foreign name: it read the whole state without the
    /// token (a review), as did a page of another origin that had the browser fetch it.
    @Test func namesLikeLoopbackAndOtherSitesReadNothingWithoutTheToken() async throws {
        for name in ["127.0.0.1.attacker.example", "127.evil.example", "127.0.0.1.nip.io", "127.0.0.256", "127.0.0", "localhost.evil.example"] {
            #expect(!Dashboard.isLoopback(name), "\(name)")
        }
        for name in ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"] {
            #expect(Dashboard.isLoopback(name), "\(name)")
        }
        try await withDashboard { fixture in
            try await Application(router: buildDashboardRouter(fixture.dashboard)).test(.router) { client in
                for host in ["127.0.0.1.attacker.example:5080", "127.evil.example:5080"] {
                    try await client.execute(uri: "/api/state", method: .get, headers: [HTTPField.Name("Host")!: host]) { response in
                        #expect(response.status == .unauthorized, "\(host)")
                    }
                }
                let crossSite: [[HTTPField.Name: String]] = [
                    [HTTPField.Name("Host")!: "127.0.0.1:5080", HTTPField.Name("Sec-Fetch-Site")!: "cross-site"],
                    [HTTPField.Name("Host")!: "127.0.0.1:5080", .origin: "http://localhost.evil.example:8000"],
                    [HTTPField.Name("Host")!: "127.0.0.1:5080", .origin: "null"],
                    // Another loopback port or scheme is another origin (a trial read the state so).
                    [HTTPField.Name("Host")!: "127.0.0.1:5080", .origin: "http://127.0.0.1:8080"],
                    [HTTPField.Name("Host")!: "127.0.0.1:5080", .origin: "https://127.0.0.1:5080"],
                ]
                // With a token configured, the admin guard refuses them as it refuses cross-origin actions.
                for headers in crossSite {
                    try await client.execute(uri: "/api/state", method: .get, headers: HTTPFields(headers.map { HTTPField(name: $0.key, value: $0.value) })) {
                        response in
                        #expect(response.status == .forbidden, "\(headers)")
                        #expect(String(buffer: response.body).contains("cross-origin"), "\(String(buffer: response.body))")
                    }
                }
                // The page's own reads (same origin, or typed in) still need nothing.
                for site in ["same-origin", "none"] {
                    let headers: HTTPFields = [
                        HTTPField.Name("Host")!: "127.0.0.1:5080", HTTPField.Name("Sec-Fetch-Site")!: site, .origin: "http://127.0.0.1:5080",
                    ]
                    try await client.execute(uri: "/api/state", method: .get, headers: headers) { response in
                        #expect(response.status == .ok, "\(site)")
                    }
                }
            }
        }
        // Without a token: refused, saying why.
        try await withDashboard(token: nil) { fixture in
            try await Application(router: buildDashboardRouter(fixture.dashboard)).test(.router) { client in
                let headers: HTTPFields = [HTTPField.Name("Host")!: "127.0.0.1:5080", HTTPField.Name("Sec-Fetch-Site")!: "cross-site"]
                try await client.execute(uri: "/api/state", method: .get, headers: headers) { response in
                    #expect(response.status == .unauthorized)
                    #expect(String(buffer: response.body).contains("another origin"), "\(String(buffer: response.body))")
                }
            }
        }
    }

    /// Reads of the state within a second share one read of Redis; a dead letter of thousands
    /// of fields is shown with a few dozen (one of 3,500 made each read 1.8 MB, a review).
    @Test func stateReadsAreSharedAndLettersClipped() async throws {
        try await withDashboard { fixture in
            let node = fixture.deadLetters.client
            var wide: [RedisArgument] = ["XADD", RedisArgument(fixture.deadLetters.key), "*"]
            for i in 0..<3_500 { wide += [RedisArgument("f\(i)"), RedisArgument(String(repeating: "x", count: 600))] }
            wide += ["dlq.reason", "wide", "dlq.original_id", "1-1"]
            _ = try await node.send(RawCommand(wide, keys: [RedisArgument(fixture.deadLetters.key)]))
            @Sendable func scans() async throws -> Int {
                let line = try await node.send(INFO(section: "commandstats"))["cmdstat_scan"] ?? ""
                return line.split(separator: ",").first { $0.hasPrefix("calls=") }.flatMap { Int($0.dropFirst("calls=".count)) } ?? 0
            }
            // What one read of Redis costs in SCAN calls (the reader itself, not through the page's cache).
            let start = try await scans()
            _ = try await fixture.dashboard.reader.read()
            let perRead = try await scans() - start
            #expect(perRead >= 1)
            let before = try await scans()
            try await Application(router: buildDashboardRouter(fixture.dashboard)).test(.router) { client in
                var sizes: [Int] = []
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<8 {
                        group.addTask {
                            try await client.execute(uri: "/api/state", method: .get) { response in
                                #expect(response.status == .ok)
                                return response.body.readableBytes
                            }
                        }
                    }
                    for try await size in group { sizes.append(size) }
                }
                let state = try await Self.state(client)
                let after = try await scans()
                // Nine reads (eight at once, one just after): one or two reads of Redis, not nine.
                #expect(after - before <= 2 * perRead, "\(after - before) SCAN calls, \(perRead) per read")
                #expect(sizes.allSatisfy { $0 < 200_000 }, "\(sizes)")
                let letters = state.streams.flatMap { $0.groups.flatMap(\.deadLetters) }
                let clipped = try #require(letters.first { $0.omittedFields != nil }, "\(letters.map(\.fields.count))")
                #expect(clipped.fields.count == OperationsReader.deadLetterFieldCount && clipped.omittedFields == 3_500 - clipped.fields.count)
            }
        }
    }

    /// A replay names a group that exists: a typo is a 404 naming the groups there are.
    @Test func replayToAGroupThatDoesNotExistIsRefused() async throws {
        try await withDashboard { fixture in
            try await Application(router: buildDashboardRouter(fixture.dashboard)).test(.router) { client in
                let typo = ByteBuffer(string: #"{"stream":"\#(DashboardFixture.stream)","group":"maler"}"#)
                try await client.execute(uri: "/api/replay", method: .post, headers: Self.bearer(DashboardFixture.token), body: typo) { response in
                    #expect(response.status == .notFound)
                    #expect(String(buffer: response.body).contains("its groups: mailer"))
                }
                #expect(try await fixture.deadLetters.list().count == 1)
            }
        }
    }

    /// `ordershop up` serves the same page and data on the gateway at /dashboard, with its admin
    /// token; a wrong method there (and on the admin routes) is a 405.
    @Test func theShopServesTheDashboardOnTheGateway() async throws {
        try await withShop(workers: [], dashboard: true) { shop in
            let page = try await shop.gateway.get("/dashboard")
            #expect(page.status == 200 && page.text.contains("OrderShop operations"), "\(page)")
            _ = try await shop.gateway.post("/customer", ["name": "Ann", "email": "ann@shop.test"])
            let state = try await shop.gateway.get("/dashboard/api/state")
            #expect(state.status == 200 && state.text.contains(EntityType.customer.stream(.created)), "\(state)")
            let refused = try await shop.gateway.send(.POST, "/dashboard/api/purge", body: Array(#"{"stream":"s","group":"g"}"#.utf8))
            #expect(refused.status == 401, "\(refused)")

            // A wrong method on the dashboard's and the admin routes is a 405 naming the methods
            // the path takes, as on the shop's own routes (it was 404 "no route").
            let asked: [(HTTPMethod, String, String)] = [
                (.PUT, "/dashboard/api/state", "GET, HEAD, OPTIONS"), (.GET, "/dashboard/api/replay", "POST, OPTIONS"),
                (.DELETE, "/dashboard/api/purge", "POST, OPTIONS"), (.POST, "/dashboard", "GET, HEAD, OPTIONS"),
                (.POST, "/admin/workers", "GET, HEAD, OPTIONS"), (.GET, "/admin/workers/crm/stop", "POST, OPTIONS"),
            ]
            for (method, path, allow) in asked {
                let reply = try await shop.gateway.send(method, path, body: nil)
                #expect(reply.status == 405 && reply.text.contains("allowed: \(allow)"), "\(method) \(path): \(reply)")
            }
            #expect(try await shop.gateway.get("/admin/workers").status == 401)
        }
    }

    /// The charts' rates come from the difference of two samples.
    @Test func ratesAreComputedFromSamples() {
        func snapshot(time: Double, added: Int, read: Int, pending: Int) -> OperationsSnapshot {
            let status = GroupStatus(
                stream: "s", group: "g", length: added, lastID: "0-0", lag: added - read, lagCounted: true, pending: pending, oldestPendingID: nil,
                oldestPendingAge: nil, consumers: [], deadLetters: 0)
            return OperationsSnapshot(
                time: time, streams: [.init(name: "s", length: added, entriesAdded: added, groups: [.init(status: status, entriesRead: read, deadLetters: [])])])
        }
        let history = RateHistory(interval: .seconds(5), window: .seconds(10))
        history.record(snapshot(time: 100, added: 10, read: 10, pending: 0))
        #expect(history.series().first?.points.isEmpty == true)
        history.record(snapshot(time: 105, added: 60, read: 40, pending: 5))
        // 50 added in 5 s; 30 read of which 5 still pending: 25 acked in 5 s; backlog 20 + 5.
        #expect(history.series() == [RateHistory.Series(stream: "s", group: "g", points: [[105, 10, 5, 25]])])
        history.record(snapshot(time: 110, added: 60, read: 60, pending: 0))
        history.record(snapshot(time: 115, added: 60, read: 60, pending: 0))
        // Two samples are kept: one rate.
        #expect(history.series().first?.points == [[115, 0, 0, 0]])
    }
}
