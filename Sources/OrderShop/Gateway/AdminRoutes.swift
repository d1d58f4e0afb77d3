import Hummingbird

/// `GET /admin/workers`, `POST /admin/workers/<name>/stop|start`: only where the gateway runs in
/// one process with the workers (`ordershop up`). A stop answers once the worker has drained.
func addAdminRoutes(to router: Router<ShopRequestContext>, control: WorkerControl) {
    router.get("/admin/workers") { _, _ in JSONResponse.encode(control.status) }
    router.post("/admin/workers/:name/:action") { _, context in
        let name = try context.parameters.require("name")
        guard let worker = control.services[name] else {
            throw ShopError(status: 404, message: "no worker named \(name); workers: \(control.services.keys.sorted().joined(separator: ", "))")
        }
        switch try context.parameters.require("action") {
        case "stop": try await worker.stop()
        case "start": try await worker.start()
        default: throw ShopError(status: 404, message: "unknown action; use stop or start")
        }
        return JSONResponse.encode(control.status)
    }
}
