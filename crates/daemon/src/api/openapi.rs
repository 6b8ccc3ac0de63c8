//! The OpenAPI document (`GET /openapi.json`) and Swagger UI (`GET /docs`), both served from
//! the binary: the UI's assets are vendored at build time, so it works on a LAN without
//! internet.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::{cameras, collections, error, events, ops, person_faces, persons, search, unknowns};

/// The `x-api-key` scheme, and the error answers any protected endpoint can give (auth,
/// request validation, size limits, overload), added to every operation that needs a key.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
        let common = [
            ("400", "ERR_INVALID_COLLECTION_NAME"),
            ("401", "ERR_API_KEY_NOT_PRESENT"),
            ("403", "ERR_API_KEY_NOT_VALID"),
            ("408", "ERR_REQUEST_TIMEOUT (server.request_timeout_s)"),
            ("413", "ERR_PAYLOAD_TOO_LARGE, ERR_IMAGE_TOO_LARGE"),
            ("422", "ERR_INVALID_REQUEST (the message names the field)"),
            (
                "429",
                "ERR_RATE_LIMITED (too many wrong keys from this address)",
            ),
            ("500", "ERR_DATABASE_ERROR, ERR_INTERNAL"),
            ("503", "ERR_BUSY (inference queue full; see Retry-After)"),
        ];
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if op.security.is_none() {
                    continue;
                }
                for (status, description) in common {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
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
        person_faces::list, person_faces::add, person_faces::delete,
        search::face_search, search::multi_face_search, search::compare,
        ops::detect, ops::liveness, ops::health, ops::metrics,
        events::list, events::get_one, events::stream,
        persons::edit, cameras::snapshot,
        unknowns::list, unknowns::get_one, unknowns::enrol, unknowns::ignore, unknowns::delete,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&CommonResponses),
)]
pub struct ApiDoc;

/// Swagger UI at `/docs`, and the spec it reads at `/openapi.json`.
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi())
}
