// TEMPORARY STUB
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CertificationRecord {
    pub imp_uid: String,
    pub merchant_uid: Option<String>,
    pub pg_tid: Option<String>,
    pub pg_provider: String,
    pub name: Option<String>,
    pub gender: Option<String>,
    pub birthday: Option<String>,
    pub birth: Option<i64>,
    pub foreigner: bool,
    pub foreigner_v2: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub carrier: Option<String>,
    pub certified: bool,
    pub certified_at: Option<i64>,
    pub unique_key: Option<String>,
    pub unique_in_site: Option<String>,
    pub origin: Option<String>,
}
impl CertificationRecord {
    pub fn certified(_i: &str, _p: &str, _n: &str, _b: chrono::NaiveDate, _c: i64) -> Self {
        todo!()
    }
}
pub fn ci_for(_k: &str) -> String {
    todo!()
}
pub fn di_for(_k: &str) -> String {
    todo!()
}
pub fn fixtures(_now: chrono::DateTime<chrono::Utc>) -> Vec<CertificationRecord> {
    todo!()
}
pub const ADULT: &str = "imp_100000000001";
pub const ADULT_SECOND_CERTIFICATION: &str = "imp_100000000002";
pub const MINOR: &str = "imp_100000000003";
pub const NOT_CERTIFIED: &str = "imp_100000000004";
pub const STALE: &str = "imp_100000000005";
pub const FOREIGNER: &str = "imp_100000000006";
pub const TURNS_19_TODAY: &str = "imp_100000000007";
pub const TURNS_19_TOMORROW: &str = "imp_100000000008";
pub const LEAP_DAY: &str = "imp_100000000009";
pub const NO_PHONE: &str = "imp_100000000010";
