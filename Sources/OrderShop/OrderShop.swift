// The OrderShop application lives in this module.
