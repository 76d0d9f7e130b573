public import SyncModel

/// Opens (and re-seals) integration configs: the two operations a worker needs of this module.
///
/// The worker depends on this protocol rather than on ``Sealer``, so its tests can use a fake.
public protocol ConfigSealer: Sendable {
    /// Whether a key with this id is loaded; a job sealed under an unknown key is a poison job, not a crash.
    func hasKey(id: String) -> Bool
    /// Decrypts and authenticates a sealed config. Throws when the ciphertext was tampered with.
    func open(_ sealed: SealedConfig) throws -> JSONValue
    /// Seals a config under the current key (for a refreshed token pair).
    func seal(_ config: JSONValue) throws -> SealedConfig
}

extension ConfigSealer {
    /// Unseals an account's config, or says why a job of the account is poison.
    ///
    /// Only the sealing is checked here (the key, the authentication, a JSON object): what the object must hold
    /// is the integration's to say.
    /// - Important: the error never contains plaintext: a tampered ciphertext says so without echoing it.
    public func openConfig(_ sealed: SealedConfig) -> Result<JSONValue, Poison> {
        guard sealed.algorithm == SealedConfig.algorithm else {
            return .failure(
                Poison(.unsupportedAlgorithm, "sealing algorithm \"\(sealed.algorithm.prefix(40))\" is not supported"))
        }
        guard hasKey(id: sealed.keyId) else {
            return .failure(
                Poison(
                    .unknownSealingKey,
                    "sealed under key id \"\(sealed.keyId.prefix(40))\", which this worker does not have: "
                        + "load that key or re-seal the account"))
        }
        let config: JSONValue
        do {
            config = try open(sealed)
        } catch {
            return .failure(
                Poison(
                    .unsealFailed, "the sealed config did not authenticate under key \"\(sealed.keyId)\" (tampered?)"))
        }
        guard case .object = config else {
            return .failure(Poison(.configNotObject, "the unsealed config is not a JSON object"))
        }
        return .success(config)
    }
}

/// The AES-GCM sealer is what production workers use.
extension Sealer: ConfigSealer {
    public func hasKey(id: String) -> Bool { canUnseal(keyId: id) }

    public func open(_ sealed: SealedConfig) throws -> JSONValue { try unseal(sealed) }
}
