//! Discovery frame bodies: the beacon a device multicasts about itself, and the query that
//! asks devices to send theirs.
//!
//! Design: both are fixed-layout except the beacon's name, whose length byte is checked
//! against [`MAX_NAME_LEN`] before the name is read, so a decoder never allocates: a parsed
//! [`Beacon`] borrows its name from the datagram. Device kinds and capability bits unknown to
//! this version are kept as they are (forward compatible within wire version 1).
//!
//! Beacon body (big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 16 | device id |
//! | 16 | 1 | device kind |
//! | 17 | 1 | reserved, zero |
//! | 18 | 2 | capability summary (bit set) |
//! | 20 | 2 | session port, 0 when the device takes no sessions |
//! | 22 | 1 | name length N, at most 64 |
//! | 23 | N | name, UTF-8 |
//!
//! Query body: device id of the asker (16 bytes), then the wanted capabilities (2 bytes,
//! 0 = any device).

use core::fmt;

use super::cursor::{Reader, Writer};
use super::frame::{FrameBody, FrameType};
use super::WireError;
use crate::identity::DeviceId;

/// The longest device name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;
/// Bytes of a beacon body before the name.
pub const BEACON_FIXED_LEN: usize = 23;
/// Bytes of a query body.
pub const QUERY_LEN: usize = 18;

/// What sort of device this is, as shown to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// Not said.
    Unspecified,
    /// A phone.
    Phone,
    /// A tablet.
    Tablet,
    /// A laptop.
    Laptop,
    /// A desktop computer.
    Desktop,
    /// A server.
    Server,
    /// A television.
    Tv,
    /// A watch.
    Watch,
    /// A speaker.
    Speaker,
    /// A camera.
    Camera,
    /// An embedded board or appliance.
    Embedded,
    /// A kind defined after this code was written.
    Other(u8),
}

impl DeviceKind {
    /// The kind byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::Phone => 1,
            Self::Tablet => 2,
            Self::Laptop => 3,
            Self::Desktop => 4,
            Self::Server => 5,
            Self::Tv => 6,
            Self::Watch => 7,
            Self::Speaker => 8,
            Self::Camera => 9,
            Self::Embedded => 10,
            Self::Other(b) => b,
        }
    }

    /// The kind of a kind byte; unknown bytes become [`DeviceKind::Other`].
    pub const fn from_byte(b: u8) -> Self {
        match b {
            0 => Self::Unspecified,
            1 => Self::Phone,
            2 => Self::Tablet,
            3 => Self::Laptop,
            4 => Self::Desktop,
            5 => Self::Server,
            6 => Self::Tv,
            7 => Self::Watch,
            8 => Self::Speaker,
            9 => Self::Camera,
            10 => Self::Embedded,
            other => Self::Other(other),
        }
    }
}

/// A summary of the capabilities a device offers, one bit per capability class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapabilitySet(pub u16);

impl CapabilitySet {
    /// No capability.
    pub const NONE: Self = Self(0);
    /// A display.
    pub const DISPLAY: Self = Self(1 << 0);
    /// Storage.
    pub const STORAGE: Self = Self(1 << 1);
    /// Compute.
    pub const COMPUTE: Self = Self(1 << 2);
    /// A camera.
    pub const CAMERA: Self = Self(1 << 3);
    /// A speaker.
    pub const SPEAKER: Self = Self(1 << 4);
    /// Sensors.
    pub const SENSOR: Self = Self(1 << 5);
    /// A microphone.
    pub const MICROPHONE: Self = Self(1 << 6);
    /// Application-defined capabilities.
    pub const CUSTOM: Self = Self(1 << 15);

    /// Whether every capability of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets together.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl fmt::Display for CapabilitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(CapabilitySet, &str); 8] = [
            (CapabilitySet::DISPLAY, "display"),
            (CapabilitySet::STORAGE, "storage"),
            (CapabilitySet::COMPUTE, "compute"),
            (CapabilitySet::CAMERA, "camera"),
            (CapabilitySet::SPEAKER, "speaker"),
            (CapabilitySet::SENSOR, "sensor"),
            (CapabilitySet::MICROPHONE, "microphone"),
            (CapabilitySet::CUSTOM, "custom"),
        ];
        let mut first = true;
        for (cap, name) in NAMES {
            if self.contains(cap) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// A device announcing itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beacon<'a> {
    /// Who sends it.
    pub device_id: DeviceId,
    /// What sort of device it is.
    pub kind: DeviceKind,
    /// What it offers.
    pub capabilities: CapabilitySet,
    /// Where it takes sessions (UDP or TCP port), 0 if nowhere.
    pub session_port: u16,
    /// Its human-readable name, at most [`MAX_NAME_LEN`] bytes.
    pub name: &'a str,
}

impl<'a> FrameBody<'a> for Beacon<'a> {
    const FRAME_TYPE: FrameType = FrameType::Beacon;

    fn body_len(&self) -> usize {
        BEACON_FIXED_LEN + self.name.len()
    }

    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        let name_len = u8::try_from(self.name.len())
            .ok()
            .filter(|&n| usize::from(n) <= MAX_NAME_LEN)
            .ok_or(WireError::Oversized { len: self.name.len(), max: MAX_NAME_LEN })?;
        w.put(self.device_id.as_bytes())?;
        w.u8(self.kind.to_byte())?;
        w.u8(0)?;
        w.u16(self.capabilities.0)?;
        w.u16(self.session_port)?;
        w.u8(name_len)?;
        w.put(self.name.as_bytes())
    }

    fn parse_body(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let device_id = DeviceId::from_bytes(r.array()?);
        let kind = DeviceKind::from_byte(r.u8()?);
        if r.u8()? != 0 {
            return Err(WireError::ReservedNotZero);
        }
        let capabilities = CapabilitySet(r.u16()?);
        let session_port = r.u16()?;
        let name_len = usize::from(r.u8()?);
        if name_len > MAX_NAME_LEN {
            return Err(WireError::Oversized { len: name_len, max: MAX_NAME_LEN });
        }
        let name = r.text(name_len)?;
        r.finish()?;
        Ok(Self { device_id, kind, capabilities, session_port, name })
    }
}

/// A request that devices (with the wanted capabilities) announce themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// Who asks.
    pub device_id: DeviceId,
    /// Only devices offering all of these should answer; empty means every device.
    pub wanted: CapabilitySet,
}

impl FrameBody<'_> for Query {
    const FRAME_TYPE: FrameType = FrameType::Query;

    fn body_len(&self) -> usize {
        QUERY_LEN
    }

    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put(self.device_id.as_bytes())?;
        w.u16(self.wanted.0)
    }

    fn parse_body(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let device_id = DeviceId::from_bytes(r.array()?);
        let wanted = CapabilitySet(r.u16()?);
        r.finish()?;
        Ok(Self { device_id, wanted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::encode_to_vec;
    use crate::wire::{decode_datagram, Datagram};
    use alloc::string::ToString;

    fn beacon(name: &str) -> Beacon<'_> {
        Beacon {
            device_id: DeviceId::from_bytes([7; 16]),
            kind: DeviceKind::Laptop,
            capabilities: CapabilitySet::DISPLAY.union(CapabilitySet::STORAGE),
            session_port: 4242,
            name,
        }
    }

    #[test]
    fn beacon_round_trips_and_layout_is_as_documented() {
        let b = beacon("kitchen");
        let bytes = encode_to_vec(&b).unwrap();
        assert_eq!(bytes.len(), 8 + 23 + 7);
        assert_eq!(&bytes[8..24], &[7; 16]);
        assert_eq!(bytes[24], 3);
        assert_eq!(&bytes[26..28], &[0, 3]);
        assert_eq!(&bytes[28..30], &4242u16.to_be_bytes());
        assert_eq!(bytes[30], 7);
        assert_eq!(decode_datagram(&bytes), Ok(Datagram::Beacon(b)));
    }

    #[test]
    fn beacon_rejects_long_names_both_ways() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(encode_to_vec(&beacon(&long)).unwrap_err(), WireError::Oversized { len: 65, max: 64 });
        let mut bytes = encode_to_vec(&beacon("a")).unwrap();
        bytes[30] = 65;
        assert_eq!(decode_datagram(&bytes).unwrap_err(), WireError::Oversized { len: 65, max: 64 });
    }

    #[test]
    fn beacon_rejects_bad_utf8_and_trailing_bytes() {
        let mut bytes = encode_to_vec(&beacon("ab")).unwrap();
        bytes[31] = 0xff;
        assert_eq!(decode_datagram(&bytes).unwrap_err(), WireError::BadUtf8);
        let mut bytes = encode_to_vec(&beacon("ab")).unwrap();
        bytes.push(0);
        assert_eq!(decode_datagram(&bytes).unwrap_err(), WireError::TrailingBytes(1));
    }

    #[test]
    fn query_round_trips() {
        let q = Query { device_id: DeviceId::from_bytes([1; 16]), wanted: CapabilitySet::CAMERA };
        let bytes = encode_to_vec(&q).unwrap();
        assert_eq!(bytes.len(), 8 + QUERY_LEN);
        assert_eq!(decode_datagram(&bytes), Ok(Datagram::Query(q)));
    }

    #[test]
    fn capability_set_displays_names() {
        assert_eq!(CapabilitySet::NONE.to_string(), "none");
        assert_eq!(CapabilitySet::DISPLAY.union(CapabilitySet::CUSTOM).to_string(), "display,custom");
    }
}
