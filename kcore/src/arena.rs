//! A generational arena: the kernel's object tables.
//!
//! Objects live in slots; an [`Id`] is a slot index and the slot's generation. Removing an
//! object bumps the generation, so every capability that still names the old id finds nothing
//! (that is how revocation and the death of an owner reach all holders without a sweep).

use alloc::vec::Vec;
use core::fmt;
use core::hash::{Hash, Hasher};
use core::marker::PhantomData;

/// The id of an object of type `T`.
pub struct Id<T> {
    index: u32,
    generation: u32,
    _type: PhantomData<fn() -> T>,
}

impl<T> Id<T> {
    /// The slot index, for display.
    pub fn index(self) -> u32 {
        self.index
    }
}

impl<T> Clone for Id<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Id<T> {}
impl<T> PartialEq for Id<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.index, self.generation) == (other.index, other.generation)
    }
}
impl<T> Eq for Id<T> {}
impl<T> Hash for Id<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.index, self.generation).hash(state);
    }
}
impl<T> PartialOrd for Id<T> {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Id<T> {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (self.index, self.generation).cmp(&(other.index, other.generation))
    }
}
impl<T> fmt::Debug for Id<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Objects of type `T` by [`Id<K>`]; the key type `K` defaults to `T` (a separate one keeps
/// type parameters of `T` out of its ids).
pub struct Arena<T, K = T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
    _key: PhantomData<fn() -> K>,
}

impl<T, K> Default for Arena<T, K> {
    fn default() -> Self {
        Arena { slots: Vec::new(), free: Vec::new(), len: 0, _key: PhantomData }
    }
}

impl<T, K> Arena<T, K> {
    pub fn insert(&mut self, value: T) -> Id<K> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { generation: 0, value: None });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.value = Some(value);
        self.len += 1;
        Id { index, generation: slot.generation, _type: PhantomData }
    }

    pub fn get(&self, id: Id<K>) -> Option<&T> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation == id.generation {
            slot.value.as_ref()
        } else {
            None
        }
    }

    pub fn get_mut(&mut self, id: Id<K>) -> Option<&mut T> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation == id.generation {
            slot.value.as_mut()
        } else {
            None
        }
    }

    pub fn contains(&self, id: Id<K>) -> bool {
        self.get(id).is_some()
    }

    pub fn remove(&mut self, id: Id<K>) -> Option<T> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation || slot.value.is_none() {
            return None;
        }
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.len -= 1;
        slot.value.take()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (Id<K>, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            Some((Id { index: i as u32, generation: s.generation, _type: PhantomData }, s.value.as_ref()?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_ids_stay_dead_after_reuse() {
        let mut a: Arena<char> = Arena::default();
        let x = a.insert('x');
        assert_eq!(a.remove(x), Some('x'));
        let y = a.insert('y');
        assert_eq!(x.index(), y.index());
        assert_eq!(a.get(x), None);
        assert_eq!(a.remove(x), None);
        assert_eq!(a.get(y), Some(&'y'));
        assert_eq!(a.len(), 1);
        assert_eq!(a.iter().map(|(id, v)| (id, *v)).collect::<std::vec::Vec<_>>(), [(y, 'y')]);
    }
}
