//! Rendering results: documents → JSON rows (projection, vector encoding).
//!
//! Invariant: rendering never fails; a missing attribute is omitted.

use super::*;

/// A vector in the requested encoding.
pub fn encode_vector(v: &[f32], enc: VectorEncoding) -> Json {
    match enc {
        VectorEncoding::Float => Json::Array(v.iter().map(|x| json!(f64::from(*x))).collect()),
        VectorEncoding::Base64 => {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            Json::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

pub(super) fn render(d: &Document, p: &Projection, enc: VectorEncoding) -> Json {
    let mut m = Map::new();
    m.insert(ID_ATTR.into(), d.id.to_json());
    let wanted = |name: &str| match p {
        Projection::IdOnly => false,
        Projection::All => true,
        Projection::Only(list) => list.iter().any(|n| n == name),
        Projection::AllExcept(list) => !list.iter().any(|n| n == name),
    };
    if let Some(v) = d.vector.as_ref().filter(|_| wanted(VECTOR_ATTR)) {
        m.insert(VECTOR_ATTR.into(), encode_vector(v, enc));
    }
    for (k, v) in &d.attrs {
        if wanted(k) {
            m.insert(k.clone(), v.to_json());
        }
    }
    Json::Object(m)
}
