"""``/v1/users/{user_id}``: declared user records and the right to erasure (admin keys)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from adrec.data.schema import Id, User
from adrec.serving.api.deps import Admin, KnownQuery, State, same_id
from adrec.serving.api.errors import KEYED, NOT_FOUND
from adrec.serving.api.schemas import ErasureOut

router = APIRouter(prefix="/v1/users", tags=["users"], responses=KEYED, dependencies=[KnownQuery])


@router.put("/{user_id}")
def put_user(_key: Admin, state: State, user_id: Id, body: User) -> User:
    same_id(user_id, body.user_id, "user_id")
    state.store.upsert_users([body])
    return body


@router.get("/{user_id}", responses=NOT_FOUND)
def get_user(_key: Admin, state: State, user_id: Id) -> User:
    return state.store.get_user(user_id)


@router.delete("/{user_id}", responses=NOT_FOUND)
def erase_user(_key: Admin, state: State, user_id: Id) -> ErasureOut:
    """Right to erasure: the user's record, profile, events and deliveries are deleted."""
    return ErasureOut(**asdict(state.store.delete_user(user_id)))
