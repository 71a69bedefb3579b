//! The SDK's shared settings, and what every Bedrock client reads alike:
//! its errors and its models' ARNs.

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::error::ProvideErrorMetadata;
use docpipe_core::error::Error;
use docpipe_core::external::Failure;
use std::time::Duration;

/// Shared SDK settings: region, credentials and endpoint from the standard
/// sources, and timeouts on every call (long enough for a 20 s SQS long poll).
pub async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(40))
        .operation_timeout(Duration::from_secs(120))
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(docpipe_core::ops::tls::aws_http_client())
        .timeout_config(timeouts)
        .load()
        .await
}

/// [`sdk_config`] with the SDK's own retries off, for the clients of an
/// [`ExternalService`](docpipe_core::external::ExternalService) (Bedrock): it
/// retries with its breaker and limiter, and two layers would multiply attempts.
pub async fn sdk_config_without_retries() -> aws_config::SdkConfig {
    sdk_config()
        .await
        .into_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build()
}

/// What a Bedrock service error means, by its code (the same for each of
/// Bedrock's APIs): throttling and an exceeded quota ("resubmit later", in
/// Bedrock's words) are a rate limit; a request refused for itself
/// (validation, access, an unknown model) is final, turned into `rejected`;
/// the rest is the service being unwell.
pub fn bedrock_failure(
    error: &impl ProvideErrorMetadata,
    rejected: impl FnOnce(String) -> Error,
) -> Failure {
    let code = error.code().unwrap_or("error");
    let message = docpipe_core::ops::redact::credentials(error.message().unwrap_or_default());
    let detail = format!("{code}: {message}");
    match code {
        "ThrottlingException" | "ServiceQuotaExceededException" => {
            Failure::RateLimited(Error::Transient(detail), None)
        }
        "ValidationException" | "AccessDeniedException" | "ResourceNotFoundException" => {
            Failure::Rejected(rejected(detail))
        }
        _ => Failure::Unavailable(Error::Transient(detail)),
    }
}

/// The ARN of Bedrock foundation model `model` in `region`, in the region's
/// partition (China and GovCloud regions are partitions of their own).
pub fn foundation_model_arn(region: &str, model: &str) -> String {
    let partition = match region {
        r if r.starts_with("cn-") => "aws-cn",
        r if r.starts_with("us-gov-") => "aws-us-gov",
        r if r.starts_with("us-isob-") => "aws-iso-b",
        r if r.starts_with("us-iso-") => "aws-iso",
        _ => "aws",
    };
    format!("arn:{partition}:bedrock:{region}::foundation-model/{model}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::ErrorMetadata;
    use docpipe_core::error::Rejection;

    fn failure(code: &str) -> Failure {
        let error = ErrorMetadata::builder()
            .code(code)
            .message("said by Bedrock")
            .build();
        bedrock_failure(&error, |detail| {
            Rejection::EmbeddingRejected { detail }.into()
        })
    }

    #[test]
    fn bedrock_errors_are_read_by_their_code() {
        for code in ["ThrottlingException", "ServiceQuotaExceededException"] {
            assert!(matches!(failure(code), Failure::RateLimited(..)), "{code}");
        }
        for code in [
            "ValidationException",
            "AccessDeniedException",
            "ResourceNotFoundException",
        ] {
            let Failure::Rejected(e) = failure(code) else {
                panic!("{code} is not final");
            };
            assert!(
                e.to_string().contains(&format!("{code}: said by Bedrock")),
                "{e}"
            );
        }
        for code in ["ModelNotReadyException", "InternalServerException", ""] {
            assert!(matches!(failure(code), Failure::Unavailable(_)), "{code}");
        }
    }

    #[test]
    fn a_foundation_model_is_named_in_its_regions_partition() {
        let model = "cohere.rerank-v3-5:0";
        for (region, partition) in [
            ("us-west-2", "aws"),
            ("eu-central-1", "aws"),
            ("cn-north-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
        ] {
            assert_eq!(
                foundation_model_arn(region, model),
                format!("arn:{partition}:bedrock:{region}::foundation-model/{model}")
            );
        }
    }
}
