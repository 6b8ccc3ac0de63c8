//! The OpenAPI document (`GET /openapi.json`) and Swagger UI (`GET /docs`), both served from
//! the binary: the UI's assets are vendored at build time, so it works on a LAN without
//! internet.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::{collections, error, ops, persons, search};

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "facegate",
        description = "Face recognition API compatible with the OpenCV FR Server API. Errors are `{code, message, metadata}`.",
    ),
    paths(
        collections::create, collections::delete, collections::get_one, collections::list,
        persons::upsert, persons::bulk_upsert, persons::list, persons::get_one,
        persons::delete_by_path, persons::delete_by_body,
        search::face_search, search::multi_face_search, search::compare,
        ops::detect, ops::liveness, ops::health, ops::metrics,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&ApiKeyScheme),
)]
pub struct ApiDoc;

/// Swagger UI at `/docs`, and the spec it reads at `/openapi.json`.
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi())
}
