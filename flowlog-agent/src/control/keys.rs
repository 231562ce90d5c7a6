//! Access keys: made from the OS random source only, kept in state.json,
//! and handed to the TCP listener's signature checks.

use tracing::{info, warn};

use super::{Control, ControlError, bad, no_random};
use crate::{
    api::{
        KeyTable,
        actions::{
            AccessKeyCreated, AccessKeyList, AccessKeyView, CreateAccessKey, DeleteAccessKey, Done,
            ListAccessKeys,
        },
    },
    model::validate,
    state::{self, AccessKey, random},
};

impl Control {
    /// The key table the API's TCP listener checks signatures against.
    pub fn keys(&self) -> KeyTable {
        self.keys.clone()
    }

    pub(super) fn publish_keys(&self) {
        let table = self
            .store
            .state
            .access_keys
            .values()
            .map(|k| (k.access_key_id.clone(), k.access_key_secret.clone()))
            .collect();
        if let Ok(mut k) = self.keys.write() {
            *k = table;
        }
    }

    pub fn create_access_key(&mut self, r: CreateAccessKey) -> Result<AccessKeyCreated, ControlError> {
        let description = r.description.unwrap_or_default();
        validate::description(&description).map_err(bad("Description"))?;
        let id = format!(
            "FLAK{}",
            random::string(random::UPPER_ALNUM, 16).map_err(no_random)?
        );
        let secret = random::string(random::ALNUM, 40).map_err(no_random)?;
        self.change(|next| {
            next.access_keys.insert(
                id.clone(),
                AccessKey {
                    access_key_id: id.clone(),
                    access_key_secret: secret.clone(),
                    description,
                    creation_time: state::now_secs(),
                },
            );
        })?;
        self.publish_keys();
        info!(access_key_id = %id, "access key created");
        Ok(AccessKeyCreated {
            access_key_id: id,
            access_key_secret: secret,
        })
    }

    pub fn delete_access_key(&mut self, r: DeleteAccessKey) -> Result<Done, ControlError> {
        let id = r.access_key_id;
        if !self.store.state.access_keys.contains_key(&id) {
            return Err(ControlError::not_found(
                "AccessKey",
                format!("access key {id:?} does not exist"),
            ));
        }
        self.change(|next| {
            next.access_keys.remove(&id);
        })?;
        self.publish_keys();
        warn!(access_key_id = %id, "access key deleted");
        Ok(Done::yes())
    }

    pub fn list_access_keys(&self, _: ListAccessKeys) -> AccessKeyList {
        let keys: Vec<AccessKeyView> = self
            .store
            .state
            .access_keys
            .values()
            .map(|k| AccessKeyView {
                access_key_id: k.access_key_id.clone(),
                description: k.description.clone(),
                creation_time: k.creation_time,
            })
            .collect();
        AccessKeyList { access_keys: keys }
    }
}
