//! Password generation that always passes Redis Software's complexity rules.

use rand::distr::{Distribution, Uniform};
use rand::{CryptoRng, TryRngCore, rngs::OsRng};
use secrecy::SecretString;

pub const MIN_LENGTH: usize = 16;
pub const MAX_LENGTH: usize = 128;

/// Special characters that need no quoting in JSON, URLs, Redis `ACL SETUSER` arguments or
/// common shell use: no quotes, backslash, space, `<>` (ACL prefixes), `#%:@/`, globs or `!`.
const SPECIAL: &[u8] = b"-_.,+=";
const CLASSES: [(&str, &[u8]); 4] = [
    ("upper-case", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    ("lower-case", b"abcdefghijklmnopqrstuvwxyz"),
    ("digit", b"0123456789"),
    ("special", SPECIAL),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordPolicyError {
    #[error("spec.password.length must be between {MIN_LENGTH} and {MAX_LENGTH}, got {0}")]
    Length(usize),
    #[error("the forbidden strings exclude every {0} character, no password can satisfy them")]
    Unsatisfiable(&'static str),
}

/// What a generated password must look like.
///
/// `forbidden` holds the user's name and email: a password must not contain any of them or
/// their reverse, case-insensitively (Redis Software's rule). One-character strings are honoured
/// by leaving the character out of the alphabet, longer ones by regenerating on a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub length: usize,
    pub forbidden: Vec<String>,
}

impl PasswordPolicy {
    pub fn new(length: usize, forbidden: Vec<String>) -> Result<Self, PasswordPolicyError> {
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
            return Err(PasswordPolicyError::Length(length));
        }
        let policy = Self { length, forbidden };
        policy.alphabet()?;
        Ok(policy)
    }

    /// Every allowed character; an error if a whole class is excluded.
    fn alphabet(&self) -> Result<Vec<u8>, PasswordPolicyError> {
        let excluded: Vec<char> = self
            .forbidden
            .iter()
            .filter(|f| f.chars().count() == 1)
            .flat_map(|f| f.chars().flat_map(char::to_lowercase))
            .collect();
        let mut alphabet = Vec::new();
        for (name, class) in CLASSES {
            let before = alphabet.len();
            alphabet.extend(
                class
                    .iter()
                    .filter(|&&b| !excluded.contains(&(b as char).to_ascii_lowercase())),
            );
            if alphabet.len() == before {
                return Err(PasswordPolicyError::Unsatisfiable(name));
            }
        }
        Ok(alphabet)
    }
}

/// Generates a password of `policy.length` characters drawn uniformly from the allowed alphabet,
/// regenerating until it satisfies [`satisfies_complexity`] (the result is uniform over all
/// passing passwords; at length 16 about 30% of the draws are rejected).
///
/// # Panics
/// If the policy is unsatisfiable: shorter than 8 characters or with a class excluded entirely
/// (`PasswordPolicy::new` rejects both).
pub fn generate<R: CryptoRng + ?Sized>(policy: &PasswordPolicy, rng: &mut R) -> SecretString {
    assert!(policy.length >= 8, "Redis Software needs 8 characters");
    let alphabet = policy.alphabet().expect("unsatisfiable password policy");
    let pick = Uniform::new(0, alphabet.len()).expect("alphabet is not empty");
    loop {
        let candidate: String = (0..policy.length)
            .map(|_| alphabet[pick.sample(rng)] as char)
            .collect();
        if satisfies_complexity(&candidate, &policy.forbidden) {
            return candidate.into();
        }
    }
}

/// [`generate`] with the operating system's CSPRNG.
pub fn generate_os(policy: &PasswordPolicy) -> SecretString {
    generate(policy, &mut OsRng.unwrap_err())
}

/// Redis Software's complexity rules: at least 8 characters, an upper-case letter, a lower-case
/// letter, a digit and a special character, no character more than 3 times in a row, and none of
/// the non-empty `forbidden` strings or their reverse (case-insensitive).
pub fn satisfies_complexity(password: &str, forbidden: &[String]) -> bool {
    let chars: Vec<char> = password.chars().collect();
    let lower = password.to_lowercase();
    chars.len() >= 8
        && chars.iter().any(char::is_ascii_uppercase)
        && chars.iter().any(char::is_ascii_lowercase)
        && chars.iter().any(char::is_ascii_digit)
        && chars.iter().any(|c| !c.is_alphanumeric())
        && !chars.windows(4).any(|w| w.iter().all(|&c| c == w[0]))
        && forbidden.iter().filter(|f| !f.is_empty()).all(|f| {
            let f = f.to_lowercase();
            let reversed: String = f.chars().rev().collect();
            !lower.contains(&f) && !lower.contains(&reversed)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::RngCore;
    use secrecy::ExposeSecret;

    /// Deterministic SplitMix64, for reproducible property tests only: the `CryptoRng` marker is
    /// a lie that production code never sees.
    struct TestRng(u64);

    impl RngCore for TestRng {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for chunk in dest.chunks_mut(8) {
                chunk.copy_from_slice(&self.next_u64().to_le_bytes()[..chunk.len()]);
            }
        }
    }

    impl CryptoRng for TestRng {}

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn length_is_validated() {
        for bad in [0, 15, 129] {
            let err = PasswordPolicy::new(bad, vec![]).unwrap_err();
            assert_eq!(err, PasswordPolicyError::Length(bad));
            assert!(err.to_string().contains("spec.password.length"));
        }
        assert!(PasswordPolicy::new(16, vec![]).is_ok());
        assert!(PasswordPolicy::new(128, vec![]).is_ok());
    }

    #[test]
    fn unsatisfiable_forbidden_set_is_rejected() {
        let digits = (0..10).map(|d| d.to_string()).collect();
        assert_eq!(
            PasswordPolicy::new(16, digits),
            Err(PasswordPolicyError::Unsatisfiable("digit"))
        );
    }

    #[test]
    fn complexity_rules() {
        let none: &[String] = &[];
        assert!(satisfies_complexity("Abcdefg1-", none));
        assert!(!satisfies_complexity("Abcde1-", none), "too short");
        assert!(!satisfies_complexity("abcdefg1-", none), "no upper");
        assert!(!satisfies_complexity("ABCDEFG1-", none), "no lower");
        assert!(!satisfies_complexity("Abcdefgh-", none), "no digit");
        assert!(!satisfies_complexity("Abcdefg12", none), "no special");
        assert!(
            satisfies_complexity("Abbbcdefg1-", none),
            "3 in a row is fine"
        );
        assert!(
            !satisfies_complexity("Abbbbcdefg1-", none),
            "4 in a row is not"
        );
        let forbidden = strings(&["orders-app", "", "Ops@example.com"]);
        assert!(satisfies_complexity("Xyz123-abc", &forbidden));
        assert!(!satisfies_complexity("x1-ORDERS-APPz", &forbidden));
        assert!(
            !satisfies_complexity("x1-PPA-SREDROz", &forbidden),
            "reverse"
        );
        assert!(!satisfies_complexity("Q1moc.elpmaxe@spo", &forbidden));
    }

    #[test]
    fn os_passwords_differ() {
        let policy = PasswordPolicy::new(16, vec![]).unwrap();
        let a = generate_os(&policy);
        let b = generate_os(&policy);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(satisfies_complexity(a.expose_secret(), &[]));
    }

    #[test]
    fn special_characters_are_safe() {
        for c in SPECIAL {
            assert!(!b"\"'\\ <>#%:@/`$!*?&;|(){}[]".contains(c));
        }
    }

    #[test]
    fn every_length_satisfies_complexity() {
        let forbidden = strings(&["orders-app", "ops@example.com"]);
        for length in MIN_LENGTH..=MAX_LENGTH {
            let policy = PasswordPolicy::new(length, forbidden.clone()).unwrap();
            for seed in 0..20 {
                let password = generate(&policy, &mut TestRng(seed));
                assert_eq!(password.expose_secret().len(), length);
                assert!(satisfies_complexity(password.expose_secret(), &forbidden));
            }
        }
    }

    proptest! {
        #[test]
        fn generated_passwords_pass_and_differ(seed: u64, length in MIN_LENGTH..=MAX_LENGTH) {
            let policy = PasswordPolicy::new(length, strings(&["orders-app", "ops@example.com"])).unwrap();
            let mut rng = TestRng(seed);
            let a = generate(&policy, &mut rng);
            let b = generate(&policy, &mut rng);
            prop_assert_eq!(a.expose_secret().len(), length);
            prop_assert!(satisfies_complexity(a.expose_secret(), &policy.forbidden));
            prop_assert!(a.expose_secret().bytes().all(|c| c.is_ascii_alphanumeric() || SPECIAL.contains(&c)));
            prop_assert_ne!(a.expose_secret(), b.expose_secret());
        }

        /// Short names would turn up by chance; they must be avoided all the same.
        #[test]
        fn short_forbidden_strings_are_avoided(seed: u64, length in MIN_LENGTH..=MAX_LENGTH, name in "[a-zA-Z0-9_.-]{1,3}") {
            let policy = PasswordPolicy::new(length, vec![name.clone(), format!("{name}@x.io")]).unwrap();
            let password = generate(&policy, &mut TestRng(seed));
            let lower = password.expose_secret().to_lowercase();
            let name = name.to_lowercase();
            prop_assert!(!lower.contains(&name));
            prop_assert!(!lower.contains(&name.chars().rev().collect::<String>()));
            prop_assert!(satisfies_complexity(password.expose_secret(), &policy.forbidden));
        }
    }
}
