import Hummingbird

/// The methods a guarded path may be asked for that it does not serve: answered 405.
private let guardedMethods: [HTTPRequest.Method] = [.get, .post, .put, .delete, .patch, .trace]

/// Answers 405 with an `Allow` header for the methods among GET, POST, PUT, DELETE, PATCH and
/// TRACE that `path` does not serve, and OPTIONS with 204 and the same `Allow`. Hummingbird
/// answers a path served for other methods as one that does not exist (404 "no route"), so
/// `PATCH /customer/<id>` read as "no such customer route" rather than "use PUT", and `OPTIONS
/// /customers` as if there were no such path. HEAD goes where GET goes
/// (``makeServiceRouter(_:)``), so `Allow` names it beside GET. On a router, a group or a route
/// collection (the dashboard's).
func addMethodNotAllowed(to router: some RouterMethods<ShopRequestContext>, path: RouterPath, allowed: [HTTPRequest.Method]) {
    let allow = (allowed.flatMap { $0 == .get ? [$0, .head] : [$0] } + [.options]).map(\.rawValue).joined(separator: ", ")
    router.on(path, method: .options) { _, _ in
        var response = Response(status: .noContent)
        response.headers[.allow] = allow
        return response
    }
    for method in guardedMethods where !allowed.contains(method) {
        router.on(path, method: method) { request, _ in
            var response = JSONResponse.bytes(
                ShopError(status: 405, message: "\(method) is not allowed on \(LogText.escaped(request.uri.path, limit: 200)); allowed: \(allow)").body,
                status: .methodNotAllowed)
            response.headers[.allow] = allow
            return response
        }
    }
}

/// The 405 answers of one entity type's paths (``EntityRoutes``): the list and create paths,
/// the item path and, for orders, the unbilled orders.
func addMethodNotAllowed(to router: Router<ShopRequestContext>, type: EntityType) {
    let routes = EntityRoutes(type)
    let creates = routes.create.map(\.description)
    addMethodNotAllowed(to: router, path: routes.list, allowed: creates.contains(routes.list.description) ? [.get, .post] : [.get])
    for path in routes.create where path.description != routes.list.description {
        addMethodNotAllowed(to: router, path: path, allowed: [.post])
    }
    addMethodNotAllowed(to: router, path: routes.item, allowed: [.get, .put, .delete])
    if type == .order { addMethodNotAllowed(to: router, path: "/orders/unbilled", allowed: [.get]) }
}
