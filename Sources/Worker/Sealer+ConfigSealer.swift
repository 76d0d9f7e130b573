public import Sealing
public import SyncModel

/// The Sealing module's AES-GCM sealer is what production workers use.
extension Sealer: ConfigSealer {
    public func hasKey(id: String) -> Bool { canUnseal(keyId: id) }

    public func open(_ sealed: SealedConfig) throws -> JSONValue { try unseal(sealed) }
}
