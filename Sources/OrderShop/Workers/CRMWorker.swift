import StreamWorker

/// CRM: customer relations, as the consumer group `crm`. It may be down at any time; its group
/// remembers where it stopped, so it sends every mail it missed once it is back, and each mail
/// exactly once (idempotency key `crm:<event_id>`, deduplicated by msg).
///
/// - customer_created: "welcome"
/// - customer_deleted: "good bye" (to the address in the event: the customer's last state), once
///   the read model shows the customer deleted at the event's version (``UnrecordedDeletion``)
/// - order_created: "thank you for buying N products: names"
public enum CRMWorker {
    public static let group = WorkerName.crm.group

    public static func subscriptions(readModel: ReadModel, mail: MailClient, pauseAfterMail: Duration = .zero) -> [Subscription] {
        let support = MailHandlerSupport(readModel: readModel, mail: mail, pauseAfterMail: pauseAfterMail)
        return [
            Subscription(stream: EntityType.customer.stream(.created), group: group, partitions: readModel.layout.partitions(of: .customer)) { delivery in
                let customer = try delivery.shopEntity(Customer.self)
                return try await support.send(to: customer.email, msg: MailKind.welcome(name: customer.name), for: delivery)
            },
            Subscription(stream: EntityType.customer.stream(.deleted), group: group, partitions: readModel.layout.partitions(of: .customer)) { delivery in
                let customer = try delivery.shopEntity(Customer.self)
                // Only a deletion the read model shows: a hand-written one gets no good-bye.
                try await UnrecordedDeletion.require(
                    Customer.self, id: customer.id, version: delivery.string("version").flatMap { Int($0) }, in: support.readModel)
                return try await support.send(to: customer.email, msg: MailKind.goodbye(name: customer.name), for: delivery)
            },
            Subscription(stream: EntityType.order.stream(.created), group: group, partitions: readModel.layout.partitions(of: .order)) { delivery in
                let order = try delivery.shopEntity(Order.self)
                let what = "order \(order.id)"
                let customer = try await support.customer(order.customerID, of: what)
                // A product deleted meanwhile keeps its last name; one never seen is a missing
                // reference, as billing finds it (it was thanked for "product <id>" before).
                let names = try support.known(try await support.products(order.productIDs), of: what).map(\.name)
                return try await support.send(
                    to: customer.email, msg: MailKind.thankYou(name: customer.name, products: names), for: delivery)
            },
        ]
    }
}

/// Billing's worker, as the consumer group `billing`:
///
/// - order_created: "please pay EUR sum"
/// - billing_created: "payment received"
public enum BillingWorker {
    public static let group = WorkerName.billing.group

    public static func subscriptions(readModel: ReadModel, mail: MailClient, pauseAfterMail: Duration = .zero) -> [Subscription] {
        let support = MailHandlerSupport(readModel: readModel, mail: mail, pauseAfterMail: pauseAfterMail)
        return [
            Subscription(stream: EntityType.order.stream(.created), group: group, partitions: readModel.layout.partitions(of: .order)) { delivery in
                let order = try delivery.shopEntity(Order.self)
                let what = "order \(order.id)"
                let customer = try await support.customer(order.customerID, of: what)
                let sum = try support.sum(try await support.products(order.productIDs), of: what)
                return try await support.send(to: customer.email, msg: MailKind.pleasePay(name: customer.name, sum: sum), for: delivery)
            },
            Subscription(stream: EntityType.billing.stream(.created), group: group, partitions: readModel.layout.partitions(of: .billing)) { delivery in
                let billing = try delivery.shopEntity(Billing.self)
                let what = "billing \(billing.id)"
                guard let order = try await support.readModel.lookup(Order.self, id: billing.orderID)?.entity else {
                    throw MissingReference(what: what, type: .order, id: billing.orderID)
                }
                let customer = try await support.customer(order.customerID, of: what)
                let sum = try support.sum(try await support.products(order.productIDs), of: what)
                return try await support.send(
                    to: customer.email, msg: MailKind.paymentReceived(name: customer.name, sum: sum, orderID: order.id), for: delivery)
            },
        ]
    }
}

extension WorkerName {
    /// The event streams this worker reads (its subscriptions'), for retention: a stream is not
    /// trimmed while one of its readers' groups does not exist yet (``EventRetention``).
    public var streams: [String] {
        switch self {
        case .crm: [EntityType.customer.stream(.created), EntityType.customer.stream(.deleted), EntityType.order.stream(.created)]
        case .billing: [EntityType.order.stream(.created), EntityType.billing.stream(.created)]
        }
    }

    /// The groups of the shop's workers that read `stream`, but those of `absent`.
    /// A partition stream (``ShopLayout``) is read by the groups that read its logical stream.
    public static func groups(reading stream: String, except absent: Set<WorkerName> = []) -> [String] {
        let logical = PartitionedStream.parse(stream)?.name
        return allCases.filter { worker in
            !absent.contains(worker) && worker.streams.contains { $0 == stream || PartitionedStream($0).base == logical }
        }.map(\.group)
    }

    /// The subscriptions of this worker. `pauseAfterMail`: the chaos harness's slow-handler
    /// mode (see ``MailHandlerSupport/pauseAfterMail``); zero in production.
    public func subscriptions(readModel: ReadModel, mail: MailClient, pauseAfterMail: Duration = .zero) -> [Subscription] {
        switch self {
        case .crm: CRMWorker.subscriptions(readModel: readModel, mail: mail, pauseAfterMail: pauseAfterMail)
        case .billing: BillingWorker.subscriptions(readModel: readModel, mail: mail, pauseAfterMail: pauseAfterMail)
        }
    }
}
