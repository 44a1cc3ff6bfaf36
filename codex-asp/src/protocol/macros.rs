//! Internal macros that generate forward-compatible wire enums.

/// A string enum with known values and an `Other(String)` fallback, so that a value added by a
/// newer codex still deserializes (and re-serializes unchanged).
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this crate does not know (kept verbatim).
            Other(String),
        }

        impl $name {
            /// The wire spelling of this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )*
                    Self::Other(s) => s.as_str(),
                }
            }

            /// Parses a wire value (never fails: unknown values become `Other`).
            pub fn from_wire(s: &str) -> Self {
                match s {
                    $( $wire => Self::$variant, )*
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(deserializer)?;
                Ok(Self::from_wire(&s))
            }
        }
    };
}

/// An enum tagged by a field (`"type"` for most of the protocol) whose unknown tags land in
/// `Unknown(serde_json::Value)` with the whole raw object kept, unlike `#[serde(other)]`.
///
/// `unit` variants carry no other field; `data` variants carry a payload struct that is
/// (de)serialized from the same object minus the tag. A known tag whose payload does not
/// parse is an error (it does not silently become `Unknown`).
macro_rules! tagged_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident (tag = $tag:literal) {
            unit { $( $(#[$umeta:meta])* $uvar:ident = $uwire:literal, )* }
            data { $( $(#[$dmeta:meta])* $dvar:ident($dty:ty) = $dwire:literal, )* }
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        $vis enum $name {
            $( $(#[$umeta])* $uvar, )*
            $( $(#[$dmeta])* $dvar($dty), )*
            /// A tag this crate does not know; the raw JSON object, tag included.
            Unknown(::serde_json::Value),
        }

        impl $name {
            /// The value of the tag field on the wire (`None` for an `Unknown` without a
            /// string tag).
            pub fn tag(&self) -> Option<&str> {
                match self {
                    $( Self::$uvar => Some($uwire), )*
                    $( Self::$dvar(_) => Some($dwire), )*
                    Self::Unknown(v) => v.get($tag).and_then(::serde_json::Value::as_str),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                #[allow(unused_imports)]
                use ::serde::ser::{Error as _, SerializeMap as _};
                match self {
                    $( Self::$uvar => {
                        let mut map = serializer.serialize_map(Some(1))?;
                        map.serialize_entry($tag, $uwire)?;
                        map.end()
                    } )*
                    $( Self::$dvar(inner) => {
                        let mut value = ::serde_json::to_value(inner).map_err(S::Error::custom)?;
                        match value.as_object_mut() {
                            Some(obj) => {
                                obj.insert($tag.to_owned(), ::serde_json::Value::from($dwire));
                            }
                            None => {
                                return Err(S::Error::custom(concat!(
                                    stringify!($name), "::", stringify!($dvar),
                                    ": payload must serialize to a JSON object"
                                )))
                            }
                        }
                        ::serde::Serialize::serialize(&value, serializer)
                    } )*
                    Self::Unknown(value) => ::serde::Serialize::serialize(value, serializer),
                }
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                #[allow(unused_imports)]
                use ::serde::de::Error as _;
                #[allow(unused_mut)]
                let mut value = <::serde_json::Value as ::serde::Deserialize>::deserialize(deserializer)?;
                let tag = value.get($tag).and_then(::serde_json::Value::as_str).map(str::to_owned);
                match tag.as_deref() {
                    $( Some($uwire) => Ok(Self::$uvar), )*
                    $( Some($dwire) => {
                        if let Some(obj) = value.as_object_mut() {
                            obj.remove($tag);
                        }
                        ::serde_json::from_value::<$dty>(value)
                            .map(Self::$dvar)
                            .map_err(|e| D::Error::custom(format_args!(
                                "{} {:?}: {}", stringify!($name), $dwire, e
                            )))
                    } )*
                    _ => Ok(Self::Unknown(value)),
                }
            }
        }
    };
}
