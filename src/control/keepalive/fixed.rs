//! A fixed keep-alive: the instance stays loaded `minutes` after every activity, and is
//! never pre-warmed. AWS Lambda keeps idle instances about 10 minutes and Azure Functions
//! 20 (Shahrad et al. 2020, section 4.1).

use super::policy::{KeepAlive, Windows};

pub struct Fixed {
    minutes: u32,
}

impl Fixed {
    pub fn new(minutes: u32) -> Self {
        Fixed { minutes }
    }
}

impl KeepAlive for Fixed {
    fn observe_idle(&mut self, _minutes: u32) {}

    fn windows(&self) -> Windows {
        Windows {
            prewarm: 0,
            keepalive: self.minutes,
        }
    }
}
