print("ordershop-chaos: not built yet")
