import StreamWorker

extension Delivery {
    /// The entity of one of the shop's events, held to what a rebuild folds into the read models,
    /// so that the workers apply only what the read models can hold:
    ///
    /// - `entity` is one JSON object, read as a request body is (strictly: a duplicate key, a lone
    ///   surrogate or trailing data is an error), with a string `id`;
    /// - `entity_id` and `version` fit it as ``RecordedEvent/envelope(of:field:)`` says;
    /// - it has every field of its type, each of its kind (``EntityType/shapeProblem(_:)``);
    /// - an order lists at least one product (no command makes one that lists none).
    ///
    /// Not the commands' limits on lengths and counts (``FieldLimits``): an event written before
    /// a limit came in is still the shop's, and its mail is owed.
    ///
    /// Anything else throws ``MalformedEvent`` with the reason, so the entry is dead-lettered and
    /// never applied. Before, a worker decoded `entity` alone, leniently: an entry a rebuild
    /// leaves out as malformed (`entity_id` naming another entity, `version` "abc", a duplicate
    /// key) got its mail, and a later trim removed it with nothing left to show for it; an order
    /// of no products was thanked for "0 products" and billed EUR 0.
    func shopEntity<E: ShopEntity>(_ type: E.Type) throws -> E {
        guard let json = self["entity"] else { throw MalformedEvent("missing field 'entity'") }
        let value: JSONValue
        do {
            value = try JSONValue.parse(json)
        } catch {
            throw MalformedEvent("field 'entity' is not valid JSON: \(error.message)")
        }
        guard case .string(let id)? = value["id"] else { throw MalformedEvent("field 'entity' has no string id") }
        if case .failure(let problem) = RecordedEvent.envelope(of: id, field: string) { throw MalformedEvent(problem.reason) }
        let entity = try E.shaped(json).get()
        if let order = entity as? Order, order.productIDs.isEmpty {
            throw MalformedEvent(Order.noProducts)
        }
        return entity
    }
}
